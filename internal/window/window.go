// Package window is the bucketed rolling window shared by the rate limiter,
// BBR, the SRE and classic breakers and automatic degradation.
package window

import (
	"errors"
	"time"
)

// Check validates a window of n buckets spanning span, as configured by
// the primitives: both positive and at least 1 ns per bucket.
func Check(span time.Duration, n int) error {
	if n < 1 || span < time.Duration(n) {
		return errors.New("window must be positive with at least 1ns per bucket")
	}
	return nil
}

// Window is a ring of buckets of width Width nanoseconds. A bucket holds the
// events whose time falls in [k·Width, (k+1)·Width) for its epoch k; the window
// at time t is the Len() buckets ending with the one that contains t. Window is
// not safe for concurrent use: every owner already holds a mutex around it.
type Window[B any] struct {
	buckets []B
	epochs  []int64
	width   int64
	last    int64 // epoch of the newest bucket touched
}

// New returns a window of n buckets, each width nanoseconds wide.
func New[B any](n int, width int64) *Window[B] {
	if n < 1 {
		n = 1
	}
	if width < 1 {
		width = 1
	}
	w := &Window[B]{buckets: make([]B, n), epochs: make([]int64, n), width: width, last: -1}
	for i := range w.epochs {
		w.epochs[i] = -1
	}
	return w
}

// Len is the number of buckets.
func (w *Window[B]) Len() int { return len(w.buckets) }

// Width is the bucket width in nanoseconds.
func (w *Window[B]) Width() int64 { return w.width }

// Epoch is the index of the bucket containing now.
func (w *Window[B]) Epoch(now int64) int64 { return now / w.width }

// Advance clears every bucket that fell out of the window at now and returns
// the bucket containing now. After Advance, every bucket in Buckets belongs to
// the window, so owners aggregate by summing all of them.
func (w *Window[B]) Advance(now int64) *B {
	e := now / w.width
	n := int64(len(w.buckets))
	if e > w.last {
		// Clear the buckets of the skipped epochs (at most n of them).
		from := w.last + 1
		if e-from >= n {
			from = e - n + 1
		}
		var zero B
		for k := from; k <= e; k++ {
			i := k % n
			w.buckets[i] = zero
			w.epochs[i] = k
		}
		w.last = e
	}
	i := e % n
	if w.epochs[i] != e {
		// now is older than the newest bucket by a full window or more
		// (a clock that went backwards): count it in the newest bucket.
		i = w.last % n
	}
	return &w.buckets[i]
}

// Last is the epoch of the newest bucket: after Advance(now) it is
// Epoch(now) without a second division.
func (w *Window[B]) Last() int64 { return w.last }

// Buckets exposes the ring for aggregation; call Advance first.
func (w *Window[B]) Buckets() []B { return w.buckets }

// Current reports whether ring index i holds the newest bucket, which is still
// filling; BBR leaves it out of its max/min estimates.
func (w *Window[B]) Current(i int) bool {
	return w.last >= 0 && int64(i) == w.last%int64(len(w.buckets))
}
