// Package collector moves spans from mercury.spans into the trace stores: fetch a batch,
// decode it (undecodable records go to mercury.dlq), write the rows and the index, and only
// then commit the batch's offsets. Writes are idempotent, so a crash replays the uncommitted
// tail and duplicates nothing.
package collector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/internal/retry"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// Group is the consumer group of every collector.
const Group = "collector"

// Config wires a collector.
type Config struct {
	daemon.Telemetry
	Bus       bus.Config // mercury.spans, mercury.dlq
	Group     string     // consumer group (default Group)
	Store     *tracestore.Store
	BatchSize int           // spans per store write (default 1000)
	BatchWait time.Duration // how long a partial batch waits for more (default 100 ms)
	// MaxAge dead-letters spans that started longer ago than this (the store's retention:
	// they would be dropped anyway, and every distinct day opens store resources). Spans
	// starting more than an hour in the future (a broken clock) are dead-lettered too.
	// Zero accepts any start time.
	MaxAge time.Duration
	// Grace bounds how long shutdown may spend finishing the batch in hand (default 15 s).
	Grace   time.Duration
	Backoff retry.Backoff // store and DLQ retries (default 100 ms … 10 s)
}

// Validate fills the defaults and checks what is required.
func (c *Config) Validate() error {
	if c.Store == nil {
		return errors.New("collector: Store is required")
	}
	if len(c.Bus.Brokers) == 0 {
		return errors.New("collector: Bus.Brokers is required")
	}
	if c.Group == "" {
		c.Group = Group
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 100 * time.Millisecond
	}
	if c.Grace <= 0 {
		c.Grace = 15 * time.Second
	}
	c.Telemetry.Defaults()
	return nil
}

// Collector is the daemon. Run it once.
type Collector struct {
	cfg      Config
	consumer *bus.Consumer
	dlq      *kafka.Writer
	m        metrics
	mu       sync.Mutex
	lastErr  error // the last store error, for Ready
	spans    []schemas.Span
}

var _ daemon.Component = (*Collector)(nil)

type metrics struct {
	spans, dlq, batches prometheus.Counter
	storeErrors         prometheus.Counter
	batchSeconds        prometheus.Histogram
	lag                 *prometheus.GaugeVec
}

// New checks the configuration, registers the metrics and builds the Kafka clients (Run
// closes them).
func New(cfg Config) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Collector{cfg: cfg}
	c.m = metrics{
		spans:        prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_collector_spans_total", Help: "Spans written to the trace stores."}),
		dlq:          prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_collector_dlq_total", Help: "Records sent to mercury.dlq."}),
		batches:      prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_collector_batches_total", Help: "Batches written and committed."}),
		storeErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_collector_store_errors_total", Help: "Failed store writes (retried)."}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mercury_collector_batch_seconds", Help: "Time to write and commit one batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		lag:          prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mercury_collector_consumer_lag", Help: "Messages behind the end of mercury.spans, per partition this member holds."}, []string{"partition"}),
	}
	if err := cfg.Register(c.m.spans, c.m.dlq, c.m.batches, c.m.storeErrors, c.m.batchSeconds, c.m.lag); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	dlq, err := bus.NewWriter(cfg.Bus, bus.WriterConfig{})
	if err != nil {
		return nil, err
	}
	c.dlq = dlq
	c.consumer, err = bus.NewConsumer(cfg.Bus, bus.ConsumerConfig{
		Topic: bus.TopicSpans, Group: cfg.Group, MaxBatch: cfg.BatchSize, MaxWait: cfg.BatchWait,
		DLQ: dlq, Backoff: cfg.Backoff, Grace: cfg.Grace, Logger: cfg.Logger,
		Revoked: func(parts []int) {
			for _, p := range parts {
				c.m.lag.DeleteLabelValues(strconv.Itoa(p))
			}
		},
	})
	if err != nil {
		bus.CloseWriter(dlq)
		return nil, err
	}
	return c, nil
}

// Routes: the collector has no endpoints beyond /metrics, /healthz and /readyz.
func (c *Collector) Routes(*http.ServeMux) {}

// Ready is nil unless the last store write or the consumer failed.
func (c *Collector) Ready() error {
	c.mu.Lock()
	err := c.lastErr
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("collector: store failing: %w", err)
	}
	if err := c.consumer.Err(); err != nil {
		return fmt.Errorf("collector: consumer: %w", err)
	}
	return nil
}

// Run consumes until ctx ends, then finishes the batch in hand (within Grace), commits it and
// closes its clients. It returns nil after a clean shutdown.
func (c *Collector) Run(ctx context.Context) error {
	defer bus.CloseWriter(c.dlq)
	return c.consumer.Run(ctx, c.handle)
}

// handle stores one batch: decode (poison records to the DLQ), write rows and index; the
// consumer commits when it returns nil. A store error marked permanent dead-letters the
// batch (replayable with `mercury dlq replay`) instead of stalling every partition behind
// it; any other store error is retried by the consumer, so a span is never skipped.
func (c *Collector) handle(ctx context.Context, b bus.Batch) error {
	start := time.Now()
	spans, err := c.decode(ctx, b.Messages, c.spans[:0])
	c.spans = spans[:0]
	if err != nil {
		return err
	}
	if len(spans) > 0 {
		err = c.cfg.Store.WriteSpans(ctx, spans)
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		if err != nil {
			c.m.storeErrors.Inc()
			if retry.IsPermanent(err) {
				c.m.dlq.Add(float64(len(b.Messages)))
			}
			return err
		}
	}
	c.m.spans.Add(float64(len(spans)))
	c.m.batches.Inc()
	c.m.batchSeconds.Observe(time.Since(start).Seconds())
	c.m.lag.WithLabelValues(strconv.Itoa(b.Partition)).Set(float64(b.Lag))
	return nil
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
			if err := c.consumer.DeadLetter(ctx, m, err); err != nil {
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
