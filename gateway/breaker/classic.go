package breaker

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/gateway/internal/token"
	"github.com/mercury-apm/mercury/internal/clock"
	"github.com/mercury-apm/mercury/internal/window"
)

// ClassicConfig configures a closed/open/half-open breaker.
type ClassicConfig struct {
	// Closed → Open when, within Window, failures reach MaxFailures (if > 0)
	// or, with at least MinRequests requests, failures/requests reach
	// FailureRatio (if > 0). At least one of the two must be set.
	MaxFailures  int64
	FailureRatio float64
	MinRequests  int64         // default 10
	Window       time.Duration // default 10s
	Buckets      int           // default 10
	// OpenFor is the recovery time (think MTTR) before probing. Default 5s.
	OpenFor time.Duration
	// HalfOpenQuota requests are let through to probe; once all of them
	// reported, the breaker closes if successes/quota ≥ CloseRatio, else
	// reopens. Defaults 5 and 0.8.
	HalfOpenQuota int64
	CloseRatio    float64
	Clock         clock.Clock
	OnStateChange OnStateChange
}

type classicBucket struct{ requests, failures int64 }

// Classic is a three-state breaker. Safe for concurrent use.
type Classic struct {
	cfg    ClassicConfig
	clock  clock.Clock
	tokens *token.Pool

	mu         sync.Mutex
	state      State
	generation int64 // bumped on every transition; stale outcomes are ignored
	win        *window.Window[classicBucket]
	openedAt   int64
	admitted   int64 // half-open probes let through
	succeeded  int64
	failed     int64
}

var _ Breaker = (*Classic)(nil)

// NewClassic validates c and returns the breaker.
func NewClassic(c ClassicConfig) (*Classic, error) {
	if c.MinRequests == 0 {
		c.MinRequests = 10
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.Buckets == 0 {
		c.Buckets = 10
	}
	if c.OpenFor == 0 {
		c.OpenFor = 5 * time.Second
	}
	if c.HalfOpenQuota == 0 {
		c.HalfOpenQuota = 5
	}
	if c.CloseRatio == 0 {
		c.CloseRatio = 0.8
	}
	switch {
	case c.MaxFailures <= 0 && c.FailureRatio <= 0:
		return nil, errors.New("breaker: classic needs max_failures or failure_ratio")
	case c.FailureRatio > 1 || c.CloseRatio < 0 || c.CloseRatio > 1:
		return nil, errors.New("breaker: ratios must be in [0,1]")
	case window.Check(c.Window, c.Buckets) != nil:
		return nil, fmt.Errorf("breaker: %w", window.Check(c.Window, c.Buckets))
	case c.OpenFor < 0 || c.HalfOpenQuota < 1 || c.MinRequests < 0:
		return nil, errors.New("breaker: open_for, half_open_quota and min_requests must be positive")
	}
	b := &Classic{cfg: c, clock: clock.Or(c.Clock),
		win: window.New[classicBucket](c.Buckets, int64(c.Window)/int64(c.Buckets))}
	b.tokens = token.New(b.finish)
	return b, nil
}

// transition is called with mu held and returns the callback to run after
// unlocking (nil when nothing changed).
func (b *Classic) transition(to State, now int64) func() {
	from := b.state
	if from == to {
		return nil
	}
	b.state = to
	b.generation++
	b.admitted, b.succeeded, b.failed = 0, 0, 0
	switch to {
	case Open:
		b.openedAt = now
	case Closed:
		b.win = window.New[classicBucket](b.win.Len(), b.win.Width())
	}
	if cb := b.cfg.OnStateChange; cb != nil {
		return func() { cb(from, to) }
	}
	return nil
}

func run(f func()) {
	if f != nil {
		f()
	}
}

// Allow admits or rejects one request; done must be called exactly once.
func (b *Classic) Allow() (func(error), error) {
	now := b.clock.Now()
	b.mu.Lock()
	var notify func()
	if b.state == Open && now-b.openedAt >= int64(b.cfg.OpenFor) {
		notify = b.transition(HalfOpen, now)
	}
	switch b.state {
	case Open:
		b.mu.Unlock()
		run(notify)
		return nil, ErrOpen
	case HalfOpen:
		if b.admitted >= b.cfg.HalfOpenQuota {
			b.mu.Unlock()
			run(notify)
			return nil, ErrOpen
		}
		b.admitted++
	}
	gen := b.generation
	b.mu.Unlock()
	run(notify)
	return b.tokens.Get(gen), nil
}

func (b *Classic) finish(gen int64, err error) {
	now := b.clock.Now()
	b.mu.Lock()
	if gen != b.generation {
		b.mu.Unlock() // admitted under an earlier state: says nothing now
		return
	}
	var notify func()
	switch b.state {
	case Closed:
		cur := b.win.Advance(now)
		cur.requests++
		if err != nil {
			cur.failures++
		}
		if err != nil && b.tripped() {
			notify = b.transition(Open, now)
		}
	case HalfOpen:
		if err == nil {
			b.succeeded++
		} else {
			b.failed++
		}
		quota := b.cfg.HalfOpenQuota
		switch {
		case float64(b.succeeded) >= b.cfg.CloseRatio*float64(quota):
			notify = b.transition(Closed, now)
		case float64(quota-b.failed) < b.cfg.CloseRatio*float64(quota):
			notify = b.transition(Open, now) // the ratio can no longer be met
		}
	}
	b.mu.Unlock()
	run(notify)
}

// tripped evaluates the closed-state thresholds; caller holds mu.
func (b *Classic) tripped() bool {
	var req, fail int64
	for _, x := range b.win.Buckets() {
		req += x.requests
		fail += x.failures
	}
	if b.cfg.MaxFailures > 0 && fail >= b.cfg.MaxFailures {
		return true
	}
	return b.cfg.FailureRatio > 0 && req >= b.cfg.MinRequests && float64(fail) >= b.cfg.FailureRatio*float64(req)
}

// State returns the state, moving Open to HalfOpen if the recovery time passed.
func (b *Classic) State() State {
	now := b.clock.Now()
	b.mu.Lock()
	var notify func()
	if b.state == Open && now-b.openedAt >= int64(b.cfg.OpenFor) {
		notify = b.transition(HalfOpen, now)
	}
	s := b.state
	b.mu.Unlock()
	run(notify)
	return s
}
