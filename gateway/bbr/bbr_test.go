package bbr

import (
	"testing"
	"time"

	"github.com/mercury-apm/mercury/gateway/cpu"
	"github.com/mercury-apm/mercury/internal/clock"
)

// warm feeds one second of traffic: 10 completions of 20 ms per 100 ms
// bucket, i.e. 100 pass/s × 20 ms → sustainable in-flight 2.
func warm(t *testing.T, l *Limiter, clk *clock.Fake) {
	t.Helper()
	for range 10 {
		dones := make([]func(error), 10)
		for i := range dones {
			done, err := l.Allow()
			if err != nil {
				t.Fatal(err)
			}
			dones[i] = done
		}
		clk.Advance(20 * time.Millisecond)
		for _, done := range dones {
			done(nil)
		}
		clk.Advance(80 * time.Millisecond)
	}
}

func TestTripsOnlyWhenBothConditionsHold(t *testing.T) {
	cases := []struct {
		name     string
		cpu      float64
		inFlight int
		shed     bool
	}{
		{"low cpu, high in-flight", 0.5, 10, false},
		{"high cpu, low in-flight", 0.95, 1, false},
		{"high cpu, high in-flight", 0.95, 10, true},
		{"cpu exactly at threshold counts as high", 0.8, 10, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk, src := clock.NewFake(time.Hour), &cpu.Fixed{}
			l, err := New(Config{CPU: src, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			warm(t, l, clk)
			if s := l.Stats(); s.MaxInFlight != 2 {
				t.Fatalf("max in-flight %d, want 2 (%+v)", s.MaxInFlight, s)
			}
			src.Set(tc.cpu)
			var dones []func(error)
			shed := false
			for range tc.inFlight + 1 {
				done, err := l.Allow()
				if err != nil {
					shed = true
					break
				}
				dones = append(dones, done)
			}
			if shed != tc.shed {
				t.Fatalf("shed=%v want %v (in-flight %d)", shed, tc.shed, len(dones))
			}
			if tc.shed && len(dones) != 3 { // admits while in-flight ≤ 2
				t.Fatalf("admitted %d before shedding, want 3", len(dones))
			}
			for _, d := range dones {
				d(nil)
			}
		})
	}
}

func TestCoolOff(t *testing.T) {
	clk, src := clock.NewFake(time.Hour), &cpu.Fixed{}
	l, _ := New(Config{CPU: src, Clock: clk})
	warm(t, l, clk)
	src.Set(0.9)
	var dones []func(error)
	for range 3 {
		d, _ := l.Allow()
		dones = append(dones, d)
	}
	if _, err := l.Allow(); err == nil {
		t.Fatal("not shed")
	}
	src.Set(0.1) // CPU average drops but we dropped 0 s ago: keep shedding
	if _, err := l.Allow(); err == nil {
		t.Fatal("cool-off ignored")
	}
	clk.Advance(1100 * time.Millisecond)
	d, err := l.Allow()
	if err != nil {
		t.Fatal("still shedding after cool-off")
	}
	d(nil)
	for _, d := range dones {
		d(nil)
	}
}

func TestLoad(t *testing.T) {
	clk, src := clock.NewFake(time.Hour), &cpu.Fixed{}
	l, _ := New(Config{CPU: src, Clock: clk})
	warm(t, l, clk)
	d1, _ := l.Allow()
	d2, _ := l.Allow()
	if l.Load() != 0 {
		t.Fatal("load with cool CPU")
	}
	src.Set(0.9)
	if got := l.Load(); got != 1 {
		t.Fatalf("load %v, want 1", got)
	}
	d1(nil)
	d2(nil)
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{}, {CPU: &cpu.Fixed{}, CPUThreshold: 2}, {CPU: &cpu.Fixed{}, Buckets: -1}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
