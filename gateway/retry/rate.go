package retry

import (
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

// rateBuckets is the length of a Rate's window in buckets.
const rateBuckets = 10

// Rate is a lock-free rolling share of "hits" (timeouts) among events over
// ten buckets. Two events racing at a bucket's rollover may lose one count;
// a rate that gates retries tolerates that, a mutex on every request would
// cost more.
type Rate struct {
	clock   clock.Clock
	width   int64
	buckets [rateBuckets]rateBucket
}

type rateBucket struct {
	epoch       atomic.Int64
	events, hit atomic.Int64
}

// NewRate returns a rate over window (default 10s), in ten buckets.
func NewRate(window time.Duration, clk clock.Clock) *Rate {
	if window <= 0 {
		window = 10 * time.Second
	}
	return &Rate{clock: clock.Or(clk), width: max(1, int64(window)/rateBuckets)}
}

// Observe counts one event, a hit or not.
func (r *Rate) Observe(hit bool) {
	e := r.clock.Now() / r.width
	b := &r.buckets[e%rateBuckets]
	if old := b.epoch.Load(); old != e && b.epoch.CompareAndSwap(old, e) {
		b.events.Store(0)
		b.hit.Store(0)
	}
	b.events.Add(1)
	if hit {
		b.hit.Add(1)
	}
}

// Value is the share of hits over the window, 0 without events.
func (r *Rate) Value() float64 {
	events, hit := r.Counts()
	if events == 0 {
		return 0
	}
	return float64(hit) / float64(events)
}

// Counts are the events and hits over the window.
func (r *Rate) Counts() (events, hit int64) {
	e := r.clock.Now() / r.width
	for i := range r.buckets {
		b := &r.buckets[i]
		if e-b.epoch.Load() < rateBuckets {
			events += b.events.Load()
			hit += b.hit.Load()
		}
	}
	return events, hit
}
