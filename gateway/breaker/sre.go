package breaker

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
	"github.com/mercury-apm/mercury/internal/window"
)

// SREConfig configures adaptive throttling (Google SRE book, "Handling
// Overload"): drop with probability max(0, (requests − K·accepts)/(requests+1))
// over a rolling window.
type SREConfig struct {
	K       float64       // sensitivity in [1.5, 2]; lower drops sooner. Default 2.
	Window  time.Duration // default 10s
	Buckets int           // default 40
	// MinRequests below which nothing is dropped, so a handful of early
	// failures cannot throttle a quiet route. Default 20.
	MinRequests int64
	Clock       clock.Clock
	// Rand returns a uniform value in [0,1); tests make it deterministic.
	Rand          func() float64
	OnStateChange OnStateChange
}

type sreBucket struct{ requests, accepts int64 }

// SRE is an adaptive-throttling breaker. Safe for concurrent use.
type SRE struct {
	cfg   SREConfig
	clock clock.Clock
	done  func(error)

	mu    sync.Mutex
	win   *window.Window[sreBucket]
	state State
	// Window totals, re-summed only when a new bucket starts (buckets may
	// have expired) and bumped alongside the current bucket otherwise.
	epoch int64
	total sreBucket
}

var _ Breaker = (*SRE)(nil)

// NewSRE validates c and returns the breaker.
func NewSRE(c SREConfig) (*SRE, error) {
	if c.K == 0 {
		c.K = 2
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.Buckets == 0 {
		c.Buckets = 40
	}
	if c.MinRequests == 0 {
		c.MinRequests = 20
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	switch {
	case c.K < 1.5 || c.K > 2:
		return nil, errors.New("breaker: sre k must be in [1.5, 2]")
	case window.Check(c.Window, c.Buckets) != nil:
		return nil, fmt.Errorf("breaker: %w", window.Check(c.Window, c.Buckets))
	case c.MinRequests < 0:
		return nil, errors.New("breaker: min requests must be ≥ 0")
	}
	b := &SRE{cfg: c, clock: clock.Or(c.Clock), epoch: -1,
		win: window.New[sreBucket](c.Buckets, int64(c.Window)/int64(c.Buckets))}
	b.done = b.finish
	return b, nil
}

// advance moves the window to now and keeps the totals in step; caller
// holds mu.
func (b *SRE) advance(now int64) *sreBucket {
	cur := b.win.Advance(now)
	if e := b.win.Last(); e != b.epoch {
		b.epoch = e
		b.total = sreBucket{}
		for _, x := range b.win.Buckets() {
			b.total.requests += x.requests
			b.total.accepts += x.accepts
		}
	}
	return cur
}

// dropProbability over the window; caller holds mu and called advance.
func (b *SRE) dropProbability() float64 {
	req, acc := b.total.requests, b.total.accepts
	if req < b.cfg.MinRequests {
		return 0
	}
	return math.Max(0, (float64(req)-b.cfg.K*float64(acc))/float64(req+1))
}

// DropProbability is the current drop probability, for the admin API.
func (b *SRE) DropProbability() float64 {
	now := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	return b.dropProbability()
}

// Allow admits or drops one request. A dropped request still counts as a
// request (with no accept), as the SRE formula prescribes: clients that are
// being throttled keep pushing the ratio until the upstream recovers.
func (b *SRE) Allow() (func(error), error) {
	now := b.clock.Now()
	b.mu.Lock()
	cur := b.advance(now)
	p := b.dropProbability()
	to := Closed
	if p > 0 {
		to = Open
	}
	from := b.state
	b.state = to
	drop := p > 0 && b.cfg.Rand() < p
	if drop {
		cur.requests++
		b.total.requests++
	}
	b.mu.Unlock()
	if from != to && b.cfg.OnStateChange != nil {
		b.cfg.OnStateChange(from, to)
	}
	if drop {
		return nil, ErrOpen
	}
	return b.done, nil
}

func (b *SRE) finish(err error) {
	now := b.clock.Now()
	b.mu.Lock()
	cur := b.advance(now)
	cur.requests++
	b.total.requests++
	if err == nil {
		cur.accepts++
		b.total.accepts++
	}
	b.mu.Unlock()
}

// State is Open while requests are being throttled.
func (b *SRE) State() State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
