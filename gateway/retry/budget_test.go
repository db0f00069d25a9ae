package retry

import (
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

func TestBudgetShareOfActive(t *testing.T) {
	b, err := NewBudget(20, 2)
	if err != nil {
		t.Fatal(err)
	}
	// 5 active: 20 % is 1, the floor of 2 concurrent retries wins.
	if b.Acquire(5) != nil || b.Acquire(5) != nil || b.Acquire(5) != ErrBudget {
		t.Fatal("floor of 2 not applied")
	}
	// 50 active: 10 retries.
	for range 8 {
		if err := b.Acquire(50); err != nil {
			t.Fatal(err)
		}
	}
	if b.Acquire(50) != ErrBudget || b.Retrying() != 10 {
		t.Fatalf("budget of 10 at 50 active: %d retrying", b.Retrying())
	}
	b.Release()
	if b.Acquire(50) != nil {
		t.Fatal("released slot not reusable")
	}
	for _, c := range [][2]float64{{-1, 0}, {101, 0}, {10, -1}} {
		if _, err := NewBudget(c[0], int64(c[1])); err == nil {
			t.Errorf("NewBudget(%v) accepted", c)
		}
	}
}

func TestRateRollsOff(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	r := NewRate(10*time.Second, clk)
	for i := range 100 {
		r.Observe(i < 20)
	}
	if v := r.Value(); v != 0.2 {
		t.Fatalf("rate %v, want 0.2", v)
	}
	clk.Advance(5 * time.Second)
	for range 100 {
		r.Observe(false)
	}
	if v := r.Value(); v != 0.1 {
		t.Fatalf("rate %v, want 0.1", v)
	}
	clk.Advance(5*time.Second + time.Nanosecond) // the first 100 are 10 s old: out
	if v := r.Value(); v != 0 {
		t.Fatalf("rate %v after the timeouts left the window, want 0", v)
	}
	clk.Advance(time.Minute)
	if v := r.Value(); v != 0 {
		t.Fatalf("empty window rate %v", v)
	}
}
