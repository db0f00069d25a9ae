// Package ratelimit is the per-route sliding-window rate limiter.
//
// A fixed window lets 2× the limit through around a window boundary; a
// sliding window of B buckets bounds that overshoot to one bucket's worth,
// and counts are exact at bucket edges: the oldest bucket leaves the window
// at the very nanosecond its epoch ends.
package ratelimit

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
	"github.com/mercury-apm/mercury/internal/window"
)

// ErrLimited is returned by Allow when the window is full.
var ErrLimited = errors.New("ratelimit: limit exceeded")

// Config of a sliding-window limiter.
type Config struct {
	Limit   int64         // requests admitted per Window
	Window  time.Duration // default 1s
	Buckets int           // default 10
	Clock   clock.Clock
}

// Limiter admits at most Limit requests in any Window-long sliding window
// (bucket-aligned). Safe for concurrent use.
type Limiter struct {
	mu    sync.Mutex
	limit int64
	win   *window.Window[int64]
	clock clock.Clock
}

// New validates c and returns a limiter.
func New(c Config) (*Limiter, error) {
	if c.Window == 0 {
		c.Window = time.Second
	}
	if c.Buckets == 0 {
		c.Buckets = 10
	}
	if c.Limit < 1 {
		return nil, errors.New("ratelimit: limit must be ≥ 1")
	}
	if err := window.Check(c.Window, c.Buckets); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	return &Limiter{
		limit: c.Limit,
		win:   window.New[int64](c.Buckets, int64(c.Window)/int64(c.Buckets)),
		clock: clock.Or(c.Clock),
	}, nil
}

func nop(error) {}

// Allow admits or rejects one request. The done callback is a no-op kept for
// the common primitive signature.
func (l *Limiter) Allow() (func(error), error) {
	now := l.clock.Now()
	l.mu.Lock()
	cur := l.win.Advance(now)
	var n int64
	for _, c := range l.win.Buckets() {
		n += c
	}
	if n >= l.limit {
		l.mu.Unlock()
		return nil, ErrLimited
	}
	*cur++
	l.mu.Unlock()
	return nop, nil
}

// SetLimit changes the limit at run time (a plan raising or lowering it) and
// returns the previous one; the counts in the window stay.
func (l *Limiter) SetLimit(limit int64) (prev int64, err error) {
	if limit < 1 {
		return 0, errors.New("ratelimit: limit must be ≥ 1")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, l.limit = l.limit, limit
	return prev, nil
}

// Stats is a snapshot for the admin API.
type Stats struct {
	Limit    int64 `json:"limit"`
	InWindow int64 `json:"in_window"`
}

// Stats returns the current figures.
func (l *Limiter) Stats() Stats {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.win.Advance(now)
	var n int64
	for _, c := range l.win.Buckets() {
		n += c
	}
	return Stats{Limit: l.limit, InWindow: n}
}
