package retry

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

// round plays one probe round: local requests, then probes until the window
// is exhausted or n probes ran, each failing if fail(i); then closes it.
func round(t *testing.T, w *Window, clk *clock.Fake, local, n int, fail func(i int) bool) (used int) {
	t.Helper()
	for range local {
		w.Local()
	}
	for i := range n {
		done, err := w.Acquire()
		if errors.Is(err, ErrExhausted) {
			break
		}
		used++
		if fail(i) {
			done(errors.New("remote failed"))
		} else {
			done(nil)
		}
	}
	clk.Advance(time.Second)
	return used
}

func never(int) bool { return false }

func TestWindowStepByStep(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	var changes []string
	w, err := New(Config{Clock: clk, OnChange: func(from, to int64) { changes = append(changes, fmt.Sprint(from, "→", to)) }})
	if err != nil {
		t.Fatal(err)
	}
	size := func(want int64) {
		t.Helper()
		if got := w.Stats().Size; got != want {
			t.Fatalf("window %d, want %d", got, want)
		}
	}
	size(1)
	// Probe growth: full use at 100 % success. With 100 local requests
	// 1 % of t is 1: f grows by max(min(1, f), 1) = 1.
	round(t, w, clk, 100, 100, never)
	size(2)
	// 1000 local: 1 % is 10, capped at f=2 → doubles.
	round(t, w, clk, 1000, 100, never)
	size(4)
	round(t, w, clk, 1000, 100, never)
	size(8)
	// 1 % = 10 < f = 16 after this one? f=8 → min(10, 8) = 8 → 16.
	round(t, w, clk, 1000, 100, never)
	size(16)
	// f=16: min(10, 16) = 10 → 26.
	round(t, w, clk, 1000, 100, never)
	size(26)
	// Under-used window (5 of 26) at 100 % success: hold.
	if used := round(t, w, clk, 1000, 5, never); used != 5 {
		t.Fatalf("used %d", used)
	}
	size(26)
	// An empty round holds too.
	clk.Advance(3 * time.Second)
	size(26)
	// Success below 98 % halves the window, down to 1.
	round(t, w, clk, 1000, 100, func(i int) bool { return i == 0 }) // 25/26 = 96 %
	size(13)
	round(t, w, clk, 1000, 100, func(int) bool { return true })
	size(6)
	round(t, w, clk, 1000, 100, func(int) bool { return true })
	size(3)
	round(t, w, clk, 1000, 100, func(int) bool { return true })
	size(1)
	round(t, w, clk, 1000, 100, func(int) bool { return true }) // floor 1
	size(1)
	want := "[1→2 2→4 4→8 8→16 16→26 26→13 13→6 6→3 3→1]"
	if fmt.Sprint(changes) != want {
		t.Fatalf("changes %v\nwant %v", changes, want)
	}
}

func TestThresholdBoundary(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	w, _ := New(Config{Clock: clk})
	for range 6 { // grow to 64 with plenty of local traffic
		round(t, w, clk, 100000, 1000, never)
	}
	if s := w.Stats().Size; s != 64 {
		t.Fatalf("size %d", s)
	}
	// 50 probes with 1 failure = 98 %: healthy but under-used → hold.
	round(t, w, clk, 100000, 50, func(i int) bool { return i == 0 })
	if s := w.Stats().Size; s != 64 {
		t.Fatalf("98%% should hold, size %d", s)
	}
	// 50 probes with 2 failures = 96 %: back off.
	round(t, w, clk, 100000, 50, func(i int) bool { return i < 2 })
	if s := w.Stats().Size; s != 32 {
		t.Fatalf("96%% should halve, size %d", s)
	}
}

func TestInFlightProbesHold(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	w, _ := New(Config{Clock: clk})
	done, _ := w.Acquire() // uses the whole window but has not reported
	clk.Advance(time.Second)
	if s := w.Stats().Size; s != 1 {
		t.Fatalf("size %d", s)
	}
	done(nil) // counts in the next round, which used none of its window: hold
	clk.Advance(time.Second)
	if s := w.Stats().Size; s != 1 {
		t.Fatalf("size %d after late report", s)
	}
}

func TestSwitches(t *testing.T) {
	var s Switches
	if !s.Enabled("a") {
		t.Fatal("zero value should be on")
	}
	s.SetService("a", false)
	if s.Enabled("a") || !s.Enabled("b") {
		t.Fatal("service switch")
	}
	s.SetGlobal(false)
	if s.Enabled("b") {
		t.Fatal("global switch")
	}
	s.SetGlobal(true)
	s.SetService("a", true)
	if !s.Enabled("a") {
		t.Fatal("re-enable")
	}
}

func TestIdempotent(t *testing.T) {
	for m, want := range map[string]bool{"GET": true, "PUT": true, "DELETE": true, "HEAD": true, "POST": false, "PATCH": false} {
		if Idempotent(m) != want {
			t.Errorf("Idempotent(%s) != %v", m, want)
		}
	}
}

func TestSwitchesReadBack(t *testing.T) {
	var s Switches
	s.SetService("b", false)
	s.SetService("a", false)
	s.SetService("c", false)
	s.SetService("c", true)
	s.SetGlobal(false)
	if s.Global() || !s.Service("c") || s.Service("a") || fmt.Sprint(s.Off()) != "[a b]" || s.Enabled("c") {
		t.Fatalf("global %v, a %v, c %v, off %v", s.Global(), s.Service("a"), s.Service("c"), s.Off())
	}
}
