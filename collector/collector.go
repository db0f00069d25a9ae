// Package collector moves spans from mercury.spans into the trace stores: fetch a batch,
// decode it (undecodable records go to mercury.dlq), write the rows and the index, and only
// then commit the batch's offsets. Writes are idempotent, so a crash replays the uncommitted
// tail and duplicates nothing.
package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/tracestore"
)

// Reader is what the collector needs of a *kafka.Reader.
type Reader interface {
	bus.Fetcher
	Stats() kafka.ReaderStats
	Close() error
}

// Config wires a collector.
type Config struct {
	Reader    Reader            // mercury.spans, group "collector"
	DLQ       bus.MessageWriter // mercury.dlq; closed by Run when it is an io.Closer
	Store     *tracestore.Store
	BatchSize int           // spans per store write (default 1000)
	BatchWait time.Duration // how long a partial batch waits for more (default 100 ms)
	// MaxAge dead-letters spans that started longer ago than this (the store's retention:
	// they would be dropped anyway, and every distinct day opens store resources). Spans
	// starting more than an hour in the future (a broken clock) are dead-lettered too.
	// Zero accepts any start time.
	MaxAge time.Duration
	// Grace bounds how long shutdown may spend finishing the batch in hand (default 15 s).
	Grace    time.Duration
	Backoff  bus.Backoff // store and DLQ retries (default 100 ms … 10 s)
	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: a private registry
}

// Collector is the daemon. Run it once.
type Collector struct {
	cfg      Config
	gatherer prometheus.Gatherer
	m        metrics
	mu       sync.Mutex
	lastErr  error // the last store error, for /readyz
}

type metrics struct {
	spans, dlq, batches prometheus.Counter
	storeErrors         prometheus.Counter
	batchSeconds        prometheus.Histogram
	lag                 prometheus.Gauge
}

// New checks the configuration and registers the metrics.
func New(cfg Config) (*Collector, error) {
	if cfg.Reader == nil || cfg.Store == nil || cfg.DLQ == nil {
		return nil, errors.New("collector: Reader, DLQ and Store are required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 100 * time.Millisecond
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 15 * time.Second
	}
	if cfg.Backoff.Min <= 0 {
		cfg.Backoff = bus.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Collector{cfg: cfg}
	reg := cfg.Registry
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, c.gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		c.gatherer = g
	}
	c.m = metrics{
		spans:        prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_collector_spans_total", Help: "Spans written to the trace stores."}),
		dlq:          prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_collector_dlq_total", Help: "Records sent to mercury.dlq."}),
		batches:      prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_collector_batches_total", Help: "Batches written and committed."}),
		storeErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_collector_store_errors_total", Help: "Failed store writes (retried)."}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mercury_collector_batch_seconds", Help: "Time to write and commit one batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		lag:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "mercury_collector_consumer_lag", Help: "Messages behind the end of mercury.spans (this consumer's partitions)."}),
	}
	for _, col := range []prometheus.Collector{c.m.spans, c.m.dlq, c.m.batches, c.m.storeErrors, c.m.batchSeconds, c.m.lag} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("collector: metrics: %w", err)
		}
	}
	return c, nil
}

// Handler serves /metrics, /healthz and /readyz.
func (c *Collector) Handler() http.Handler {
	mux := http.NewServeMux()
	if c.gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(c.gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		c.mu.Lock()
		err := c.lastErr
		c.mu.Unlock()
		if err != nil {
			http.Error(w, "store failing: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}

// Run consumes until ctx ends, then finishes the batch in hand (within Grace), commits it and
// closes the reader. It returns nil after a clean shutdown.
func (c *Collector) Run(ctx context.Context) error {
	defer c.cfg.Reader.Close()
	if dlq, ok := c.cfg.DLQ.(io.Closer); ok {
		defer dlq.Close()
	}
	// Work on a batch continues past ctx's end, for at most Grace: shutdown flushes.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.Grace, cancelWork) })
	defer stop()

	msgs := make([]kafka.Message, 0, c.cfg.BatchSize)
	spans := make([]schemas.Span, 0, c.cfg.BatchSize)
	for {
		msgs = c.fetch(ctx, msgs[:0])
		if len(msgs) == 0 {
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		start := time.Now()
		var err error
		if spans, err = c.decode(work, msgs, spans[:0]); err != nil {
			return err
		}
		if err := c.write(work, spans); err != nil {
			return err
		}
		if err := c.commit(work, msgs); err != nil {
			return err
		}
		c.m.spans.Add(float64(len(spans)))
		c.m.batches.Inc()
		c.m.batchSeconds.Observe(time.Since(start).Seconds())
		c.m.lag.Set(float64(c.cfg.Reader.Stats().Lag))
	}
}

// fetch blocks for the first message, then gathers more for at most BatchWait.
func (c *Collector) fetch(ctx context.Context, msgs []kafka.Message) []kafka.Message {
	m, err := c.cfg.Reader.FetchMessage(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.cfg.Logger.Warn("collector: fetch", "err", err)
			time.Sleep(c.cfg.Backoff.Min)
		}
		return msgs
	}
	msgs = append(msgs, m)
	wait, cancel := context.WithTimeout(ctx, c.cfg.BatchWait)
	defer cancel()
	for len(msgs) < c.cfg.BatchSize {
		m, err := c.cfg.Reader.FetchMessage(wait)
		if err != nil {
			break
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// decode turns messages into spans; a record that does not decode goes to the DLQ with the
// error in a header, and the batch goes on without it.
func (c *Collector) decode(ctx context.Context, msgs []kafka.Message, spans []schemas.Span) ([]schemas.Span, error) {
	now := time.Now()
	for _, m := range msgs {
		spans = append(spans, schemas.Span{})
		err := schemas.Unmarshal(m.Value, &spans[len(spans)-1])
		if err == nil && c.cfg.MaxAge > 0 {
			err = checkStart(spans[len(spans)-1].StartUnixNano, now, c.cfg.MaxAge)
		}
		if err != nil {
			spans = spans[:len(spans)-1]
			if err := c.retry(ctx, "dead-letter", func() error { return bus.SendDLQ(ctx, c.cfg.DLQ, m, err) }); err != nil {
				return spans, err
			}
			c.m.dlq.Inc()
		}
	}
	return spans, nil
}

// checkStart keeps span start times within [now-maxAge, now+1h].
func checkStart(startNano int64, now time.Time, maxAge time.Duration) error {
	start := time.Unix(0, startNano)
	if start.Before(now.Add(-maxAge)) || start.After(now.Add(time.Hour)) {
		return fmt.Errorf("span start %s outside the accepted window (retention %s, clock skew 1h)", start.UTC().Format(time.RFC3339), maxAge)
	}
	return nil
}

// write stores the batch, retrying with backoff until it succeeds: a span is never skipped.
// A permanent store error (a mapping conflict, say) still retries: dropping data silently is
// worse than a stalled, alerting collector.
func (c *Collector) write(ctx context.Context, spans []schemas.Span) error {
	if len(spans) == 0 {
		return nil
	}
	return c.retry(ctx, "store", func() error { return c.cfg.Store.WriteSpans(ctx, spans) })
}

// commit records the batch's offsets: the last message of each partition (kafka-go commits
// offset+1). Batches are processed whole and in order, so this is the lowest contiguous
// offset not yet stored.
func (c *Collector) commit(ctx context.Context, msgs []kafka.Message) error {
	last := map[int]kafka.Message{}
	for _, m := range msgs {
		last[m.Partition] = m
	}
	commits := make([]kafka.Message, 0, len(last))
	for _, m := range last {
		commits = append(commits, m)
	}
	return c.retry(ctx, "commit", func() error { return c.cfg.Reader.CommitMessages(ctx, commits...) })
}

func (c *Collector) retry(ctx context.Context, what string, fn func() error) error {
	b := c.cfg.Backoff
	for {
		err := fn()
		c.mu.Lock()
		if what == "store" {
			c.lastErr = err
		}
		c.mu.Unlock()
		if err == nil {
			return nil
		}
		if what == "store" {
			c.m.storeErrors.Inc()
		}
		c.cfg.Logger.Warn("collector: retrying", "what", what, "err", err)
		if werr := b.Wait(ctx); werr != nil {
			return fmt.Errorf("collector: %s: giving up at shutdown: %w (last error: %w)", what, werr, err)
		}
	}
}

// Stats is a snapshot of the collector's counters.
type Stats struct {
	Spans, DLQ, Batches, StoreErrors int64
}

// Stats reads the counters behind /metrics.
func (c *Collector) Stats() Stats {
	read := func(m prometheus.Metric) int64 {
		var d dto.Metric
		_ = m.Write(&d)
		return int64(d.GetCounter().GetValue())
	}
	return Stats{Spans: read(c.m.spans), DLQ: read(c.m.dlq), Batches: read(c.m.batches), StoreErrors: read(c.m.storeErrors)}
}

// Group is the consumer group of every collector.
const Group = "collector"

// NewOnBus builds the collector's Kafka clients — a reader of mercury.spans in Group and a
// DLQ writer — and the collector around them (cfg.Reader and cfg.DLQ are set here). Run
// closes both.
func NewOnBus(bc bus.Config, cfg Config) (*Collector, error) {
	r, err := bus.NewReader(bc, bus.ReaderConfig{Topic: bus.TopicSpans, GroupID: Group})
	if err != nil {
		return nil, err
	}
	dlq, err := bus.NewWriter(bc, bus.WriterConfig{})
	if err != nil {
		r.Close()
		return nil, err
	}
	cfg.Reader, cfg.DLQ = r, dlq
	c, err := New(cfg)
	if err != nil {
		r.Close()
		bus.CloseWriter(dlq)
	}
	return c, err
}
