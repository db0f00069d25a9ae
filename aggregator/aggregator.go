// Package aggregator is the two-phase metrics daemon (`mercury aggregator --phase N`).
//
// Phase 1 reads mercury.spans and folds each partition's records, one contiguous offset
// range at a time, into partials per series and 20 s event-time window (aggregator/phase1),
// emitted to mercury.metrics.20s keyed by series id. Phase 2 reads the partials, merges them
// into minute points exactly once (aggregator/phase2), upserts them into the metric store
// with a new revision and re-emits them to mercury.metrics.1m.
//
// Exactly once without Kafka transactions: before phase 1 emits a range it commits the
// range's first offset with an intent naming its last offset (commit metadata, atomic with
// the offset); after, it commits past the range. A restarted phase 1 that finds an intent
// replays exactly that range, from the same watermark, so the partials it re-emits are the
// same; phase 2 drops them by (source partition, range, series, window), with that state
// stored in the same write as the point. Phase 2 commits its input only after the store
// acknowledged. docs/metrics.md has the whole argument.
package aggregator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/aggregator/phase1"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// Consumer groups.
const (
	GroupPhase1 = "agg-p1"
	GroupPhase2 = "agg-p2"
)

// Config configures one phase.
type Config struct {
	daemon.Telemetry
	Phase int // 1 or 2
	Bus   bus.Config
	// Store is the metric store phase 2 writes (required for phase 2, unused by phase 1).
	Store metricstore.Store
	// Group commits the positions; default agg-p1 / agg-p2.
	Group string
	// Partitions this instance owns; nil: every partition of its input topic. Instances of
	// one phase must own disjoint sets (see docs/metrics.md on scaling out).
	Partitions []int
	// Fold tunes phase 1: window (20 s), lateness (30 min), series cap per service.
	Fold phase1.Config
	// FlushInterval bounds how long a record waits in memory before it is emitted (phase 1)
	// or stored (phase 2); default 2 s for phase 1, 1 s for phase 2.
	FlushInterval time.Duration
	// Idle is how long a caught-up input stays quiet before what is held is flushed
	// anyway, so a minute's last spans do not wait out FlushInterval; default 200 ms.
	Idle time.Duration
	// MaxOpen bounds phase 1's aggregates per partition (series × windows in a range; each
	// about 1–3 KB, its sketch included): a range that reaches it is flushed at once, so a
	// burst slows consumption instead of growing memory. Default 10,000.
	MaxOpen int
	// MaxSeries caps the series phase 2 stores per service and UTC day, all partitions
	// together (each admits its share); further series are merged into the service's
	// __other__ series. Default 5000.
	MaxSeries int
	// MaxPoints bounds the minute points phase 2 keeps per partition (each about 1–3 KB);
	// beyond it the oldest stored ones are evicted and re-read if a late partial needs them.
	// Default 10,000.
	MaxPoints int
	// Backoff paces retries of broker and store errors; default 100 ms … 5 s.
	Backoff retry.Backoff
	// Grace bounds the final flush on shutdown; default 15 s.
	Grace time.Duration
}

// Validate checks cfg and fills defaults.
func (c *Config) Validate() error {
	c.Telemetry.Defaults()
	switch c.Phase {
	case 1:
		if c.Group == "" {
			c.Group = GroupPhase1
		}
		if c.FlushInterval <= 0 {
			c.FlushInterval = 2 * time.Second
		}
	case 2:
		if c.Store == nil {
			return errors.New("aggregator: phase 2 needs a metric store")
		}
		if c.Group == "" {
			c.Group = GroupPhase2
		}
		if c.FlushInterval <= 0 {
			c.FlushInterval = time.Second
		}
	default:
		return fmt.Errorf("aggregator: phase %d (want 1 or 2)", c.Phase)
	}
	if len(c.Bus.Brokers) == 0 {
		return errors.New("aggregator: no brokers configured")
	}
	c.Fold.Defaults()
	if 60000%c.Fold.Window.Milliseconds() != 0 || c.Fold.Window < time.Second {
		return fmt.Errorf("aggregator: window %v does not divide a minute into whole seconds", c.Fold.Window)
	}
	if c.Idle <= 0 {
		c.Idle = 200 * time.Millisecond
	}
	if c.MaxOpen <= 0 {
		c.MaxOpen = 10000
	}
	if c.MaxSeries <= 0 {
		c.MaxSeries = 5000
	}
	if c.MaxPoints <= 0 {
		c.MaxPoints = 10000
	}
	if c.Backoff.Min <= 0 {
		c.Backoff = retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	}
	if c.Grace <= 0 {
		c.Grace = 15 * time.Second
	}
	for _, p := range c.Partitions {
		if p < 0 {
			return fmt.Errorf("aggregator: partition %d", p)
		}
	}
	return nil
}

// hook, when set by a test, is called at the crash-sensitive points of a flush.
var hook func(point string)

func at(point string) {
	if hook != nil {
		hook(point)
	}
}

// Aggregator is one phase, a daemon.Component.
type Aggregator struct {
	cfg   Config
	m     *metrics
	input string

	mu      sync.Mutex
	started int   // partitions whose position is loaded
	owned   int   // partitions owned
	lastErr error // the last broker or store error, nil after a success
}

var _ daemon.Component = (*Aggregator)(nil)

// New validates cfg and registers the phase's metrics.
func New(cfg Config) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Aggregator{cfg: cfg, input: bus.TopicSpans}
	if cfg.Phase == 2 {
		a.input = bus.TopicMetrics20s
	}
	a.m = newMetrics(cfg.Phase)
	if err := cfg.Telemetry.Register(a.m.collectors()...); err != nil {
		return nil, err
	}
	return a, nil
}

// Routes mounts nothing: the phase's metrics are on the registry.
func (a *Aggregator) Routes(*http.ServeMux) {}

// Ready is nil once every owned partition resumed and the last broker/store call worked.
func (a *Aggregator) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lastErr != nil {
		return a.lastErr
	}
	if a.owned == 0 || a.started < a.owned {
		return fmt.Errorf("aggregator phase %d: %d of %d partitions resumed", a.cfg.Phase, a.started, a.owned)
	}
	return nil
}

func (a *Aggregator) setErr(err error) {
	a.mu.Lock()
	a.lastErr = err
	a.mu.Unlock()
}

// Run works the owned partitions until ctx ends, then flushes and commits what it holds.
func (a *Aggregator) Run(ctx context.Context) error {
	cl, err := a.cfg.Bus.Client()
	if err != nil {
		return err
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	var all []int
	if err := a.retry(ctx, func() error { all, err = partitionsOf(ctx, cl, a.input); return err }); err != nil {
		return ended(ctx, err)
	}
	parts := a.cfg.Partitions
	if len(parts) == 0 {
		parts = all
	}
	parts = slices.Compact(slices.Sorted(slices.Values(parts)))
	a.mu.Lock()
	a.owned = len(parts)
	a.mu.Unlock()
	w, err := bus.NewWriter(a.cfg.Bus, bus.WriterConfig{BatchSize: 5000})
	if err != nil {
		return err
	}
	defer bus.CloseWriter(w)
	offs := &offsets{client: cl, group: a.cfg.Group, topic: a.input}
	g := daemon.NewGroup(ctx)
	for _, p := range parts {
		g.Go(fmt.Sprintf("aggregator phase %d partition %d", a.cfg.Phase, p), func(ctx context.Context) error {
			if a.cfg.Phase == 1 {
				return a.runPhase1(ctx, offs, w, p)
			}
			return a.runPhase2(ctx, offs, w, p, len(all))
		})
	}
	return g.Wait()
}

// retry runs fn until it succeeds, fails permanently (returned: the phase stops with it, as
// skipping would lose data) or ctx ends (then it returns ctx's error).
func (a *Aggregator) retry(ctx context.Context, fn func() error) error {
	b := a.cfg.Backoff
	for {
		err := fn()
		if err == nil {
			a.setErr(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if retry.IsPermanent(err) {
			a.setErr(err)
			return err
		}
		a.setErr(err)
		a.m.retries.Inc()
		a.cfg.Logger.Warn("aggregator: retrying", "phase", a.cfg.Phase, "err", err)
		if werr := b.Wait(ctx); werr != nil {
			return werr
		}
	}
}

// resume loads partition's checkpoint and opens a reader at it.
func (a *Aggregator) resume(ctx context.Context, offs *offsets, part int) (checkpoint, *kafka.Reader, error) {
	var cp checkpoint
	if err := a.retry(ctx, func() (err error) { cp, err = offs.fetch(ctx, part); return err }); err != nil {
		return cp, nil, err
	}
	d, err := a.cfg.Bus.Dialer()
	if err != nil {
		return cp, nil, err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: a.cfg.Bus.Brokers, Topic: a.input, Partition: part, Dialer: d,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond,
		ReadBackoffMin: 50 * time.Millisecond, ReadBackoffMax: time.Second, QueueCapacity: 1000,
	})
	start := cp.offset
	if start < 0 {
		start = kafka.FirstOffset
	}
	if err := r.SetOffset(start); err != nil {
		r.Close()
		return cp, nil, err
	}
	a.mu.Lock()
	a.started++
	a.mu.Unlock()
	return cp, r, nil
}

// ended is nil when err is only ctx ending (a shutdown), else err.
func ended(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// graceCtx outlives ctx by Grace, for the final flush.
func (a *Aggregator) graceCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Grace)
}

// fetcher reads one partition with a deadline, keeping one context per deadline: a
// context and timer per record would cost more than the record's own processing.
type fetcher struct {
	a      *Aggregator
	r      *kafka.Reader
	ctx    context.Context // the caller's
	dl     time.Time
	fctx   context.Context
	cancel context.CancelFunc
}

// next waits for the next record until ctx ends (err) or deadline passes or a fetch fails
// (ok false, err nil).
func (f *fetcher) next(deadline time.Time) (kafka.Message, bool, error) {
	if f.fctx == nil || !deadline.Equal(f.dl) || f.fctx.Err() != nil {
		f.close()
		f.fctx, f.cancel = context.WithDeadline(f.ctx, deadline)
		f.dl = deadline
	}
	m, err := f.r.FetchMessage(f.fctx)
	switch {
	case f.ctx.Err() != nil:
		return m, false, f.ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		return m, false, nil
	case err != nil:
		// The reader reports a failed fetch (a broker down, a leader moving) and retries it
		// itself after its backoff: the phase waits, it does not stop.
		f.a.setErr(fmt.Errorf("aggregator: fetch: %w", err))
		f.a.m.retries.Inc()
		f.a.cfg.Logger.Warn("aggregator: fetch failed, the reader retries", "phase", f.a.cfg.Phase, "err", err)
		return m, false, nil
	}
	return m, true, nil
}

func (f *fetcher) close() {
	if f.cancel != nil {
		f.cancel()
	}
}
