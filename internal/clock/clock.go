// Package clock is the time source every resilience primitive and window takes, so tests
// drive windows and timeouts with a fake clock instead of sleeping.
package clock

import (
	"sync"
	"time"
)

// Clock reports the current time in nanoseconds. Nanoseconds rather than
// time.Time keep the primitives' decision paths free of wall/monotonic juggling.
type Clock interface {
	Now() int64
}

// Real is the process clock. Its readings are monotonic: they are taken as an
// offset from a fixed start, so wall-clock steps never shift a window.
type Real struct{}

var start = time.Now()

// Now returns nanoseconds since process start.
func (Real) Now() int64 { return int64(time.Since(start)) }

// Or returns c, or Real when c is nil, so zero-value configs work.
func Or(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}

// Fake is a manually advanced clock for tests.
type Fake struct {
	mu  sync.Mutex
	now int64
}

// NewFake returns a fake clock at t nanoseconds. Starting away from zero
// catches code that treats zero as "unset".
func NewFake(t time.Duration) *Fake { return &Fake{now: int64(t)} }

// Now returns the fake time.
func (f *Fake) Now() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now += int64(d)
	f.mu.Unlock()
}
