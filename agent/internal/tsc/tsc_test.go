package tsc

import (
	"testing"
	"time"
)

func TestInvariantFlags(t *testing.T) {
	for _, c := range []struct {
		cpuinfo string
		want    bool
	}{
		{"processor\t: 0\nflags\t\t: fpu tsc constant_tsc nonstop_tsc cpuid\n", true},
		{"flags\t\t: constant_tsc nonstop_tsc\n", true},
		{"flags\t\t: fpu tsc constant_tsc\n", false},                       // stops in deep idle states
		{"flags\t\t: nonstop_tsc_x constant_tsc_y\n", false},               // whole words only
		{"model name\t: x constant_tsc nonstop_tsc\nflags : fpu\n", false}, // not the flags line
		{"", false},
	} {
		if got := invariant([]byte(c.cpuinfo)); got != c.want {
			t.Errorf("invariant(%q) = %v, want %v", c.cpuinfo, got, c.want)
		}
	}
}

// Where usable, the counter advances with the monotonic clock.
func TestReadAdvances(t *testing.T) {
	if !Usable() {
		t.Skip("no invariant time-stamp counter here")
	}
	t0, c0 := time.Now(), Read()
	time.Sleep(20 * time.Millisecond)
	c1, d := Read(), time.Since(t0)
	if c1 <= c0 {
		t.Fatalf("counter went from %d to %d", c0, c1)
	}
	if hz := float64(c1-c0) / d.Seconds(); hz < 1e7 || hz > 1e11 {
		t.Fatalf("counter rate %.3g Hz is not a clock", hz)
	}
}
