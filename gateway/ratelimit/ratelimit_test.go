package ratelimit

import (
	"errors"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

func TestSlidingWindowBucketEdges(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	l, err := New(Config{Limit: 10, Window: time.Second, Buckets: 10, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	allow := func(want bool) {
		t.Helper()
		_, err := l.Allow()
		if got := err == nil; got != want {
			t.Fatalf("at %v: allowed=%v, want %v", time.Duration(clk.Now()), got, want)
		}
	}
	// 4 requests in bucket 0, 6 in bucket 5: window full.
	for range 4 {
		allow(true)
	}
	clk.Advance(500 * time.Millisecond)
	for range 6 {
		allow(true)
	}
	allow(false)
	// One nanosecond before bucket 0 leaves the window: still full.
	clk.Advance(500*time.Millisecond - 1)
	allow(false)
	// Exactly at the edge bucket 0's 4 requests leave; 4 slots open, not 5.
	clk.Advance(1)
	for range 4 {
		allow(true)
	}
	allow(false)
	if s := l.Stats(); s.InWindow != 10 || s.Limit != 10 {
		t.Fatalf("stats %+v", s)
	}
	// Bucket 5 leaves exactly 500ms later.
	clk.Advance(500*time.Millisecond - 1)
	allow(false)
	clk.Advance(1)
	for range 6 {
		allow(true)
	}
	allow(false)
	// A gap longer than the window clears everything.
	clk.Advance(3 * time.Second)
	if s := l.Stats(); s.InWindow != 0 {
		t.Fatalf("after idle: %+v", s)
	}
}

func TestRejectIsErrLimited(t *testing.T) {
	l, _ := New(Config{Limit: 1, Clock: clock.NewFake(0)})
	l.Allow()
	if _, err := l.Allow(); !errors.Is(err, ErrLimited) {
		t.Fatalf("err = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{Limit: 0}, {Limit: 1, Window: -time.Second}, {Limit: 1, Buckets: -1}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestSetLimit(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	l, _ := New(Config{Limit: 2, Window: time.Second, Clock: clk})
	l.Allow()
	l.Allow()
	if _, err := l.Allow(); err != ErrLimited {
		t.Fatal("limit 2 not enforced")
	}
	if prev, err := l.SetLimit(3); err != nil || prev != 2 {
		t.Fatalf("SetLimit: %v %v", prev, err)
	}
	if _, err := l.Allow(); err != nil {
		t.Fatal("raised limit not applied")
	}
	if _, err := l.SetLimit(0); err == nil || l.Stats().Limit != 3 {
		t.Fatal("limit 0 accepted")
	}
}
