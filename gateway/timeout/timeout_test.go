package timeout

import (
	"testing"
	"time"
)

func TestTimeoutRegimes(t *testing.T) {
	ms := time.Millisecond
	// N=1 makes the EMA the last latency, so each case pins the regime.
	e, err := New(Config{Thwm: 300 * ms, Tmax: 500 * ms, Tavg: 100 * ms, N: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Timeout(); got != 500*ms {
		t.Fatalf("fresh: %v, want Tmax", got)
	}
	cases := []struct{ latency, want time.Duration }{
		{50 * ms, 500 * ms},  // better than Tavg: full elasticity
		{100 * ms, 500 * ms}, // at Tavg
		{200 * ms, 400 * ms}, // halfway between Tavg and Thwm: halfway to Tmax
		{250 * ms, 350 * ms},
		{300 * ms, 300 * ms}, // at Thwm
		{900 * ms, 300 * ms}, // worse than Thwm: clamps to Thwm
	}
	for _, c := range cases {
		e.Observe(c.latency)
		if got := e.Timeout(); got != c.want {
			t.Errorf("EMA %v: timeout %v, want %v", c.latency, got, c.want)
		}
	}
}

func TestEMASmoothing(t *testing.T) {
	ms := time.Millisecond
	e, _ := New(Config{Thwm: 300 * ms, Tmax: 500 * ms, Tavg: 100 * ms, N: 3}) // r = 0.5
	e.Observe(300 * ms)                                                       // 0.5·300 + 0.5·100
	if got := e.Average(); got != 200*ms {
		t.Fatalf("average %v, want 200ms", got)
	}
	// A spike of slow requests drags the timeout down towards Thwm…
	for range 20 {
		e.Observe(1000 * ms)
	}
	if got := e.Timeout(); got != 300*ms {
		t.Fatalf("after spike %v, want Thwm", got)
	}
	// …and recovery stretches it back to Tmax.
	for range 20 {
		e.Observe(10 * ms)
	}
	if got := e.Timeout(); got != 500*ms {
		t.Fatalf("after recovery %v, want Tmax", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Thwm: time.Second, Tmax: time.Millisecond},
		{Thwm: time.Second, Tmax: 2 * time.Second, Tavg: time.Second},
		{Thwm: time.Second, Tmax: 2 * time.Second, N: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
