package agent

import (
	"math"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/agent/internal/tsc"
)

// Durations read through a base agree with the monotonic clock, whichever clock backs it, and
// the start's wall time is the base's plus the elapsed time.
func TestClockBaseAgreesWithTheMonotonicClock(t *testing.T) {
	cb := newClockBase(nil)
	if cb.nsPerTick != 0 {
		t.Fatal("a first base has a counter rate it cannot have measured")
	}
	time.Sleep(5 * time.Millisecond)
	cb = newClockBase(cb)
	if tsc.Usable() != (cb.nsPerTick != 0) {
		t.Fatalf("counter usable %v, but the measured period is %v ns", tsc.Usable(), cb.nsPerTick)
	}
	t0, r0 := time.Now(), cb.read()
	time.Sleep(30 * time.Millisecond)
	r1, want := cb.read(), time.Since(t0)
	got := time.Duration(cb.nanos(r1 - r0))
	if math.Abs(float64(got-want)) > 0.01*float64(want)+float64(20*time.Microsecond) {
		t.Fatalf("30 ms sleep measured %v through the base, %v by the monotonic clock (period %v ns)", got, want, cb.nsPerTick)
	}
	if start := cb.wall + cb.nanos(r0); math.Abs(float64(start-t0.UnixNano())) > float64(time.Millisecond) {
		t.Fatalf("start %d, wall clock said %d", start, t0.UnixNano())
	}
}

// A base taken less than a millisecond after the previous one keeps its rate instead of
// measuring over too short an interval.
func TestClockBaseKeepsTheRateOverShortIntervals(t *testing.T) {
	if !tsc.Usable() {
		t.Skip("no invariant time-stamp counter here")
	}
	cb := newClockBase(nil)
	time.Sleep(5 * time.Millisecond)
	cb = newClockBase(cb)
	next := newClockBase(cb)
	if next.nsPerTick != cb.nsPerTick || next.tsc <= cb.tsc {
		t.Fatalf("period %v then %v, counter %d then %d", cb.nsPerTick, next.nsPerTick, cb.tsc, next.tsc)
	}
}
