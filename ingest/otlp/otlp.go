// Package otlp is the OTLP ingest daemon: OpenTelemetry-instrumented services export traces
// to it over OTLP/HTTP (POST /v1/traces, protobuf or JSON, gzip or not) or OTLP/gRPC
// (TraceService/Export), and it produces them into the same topics Mercury's agents feed:
// every span to mercury.spans keyed by trace id, every exception event also to mercury.events,
// so the collector, the aggregator and the alerter treat them like any other.
//
// A request is answered once its records are acknowledged by the bus (acks=all). Spans that
// cannot be stored (bad ids, too big) are rejected one by one with OTLP's partial success;
// a body that does not decode is a 400, one over the size limit a 413, an unknown content
// type a 415, and a bus that does not take the records a 503 (retryable, per the OTLP
// specification), so the exporter retries and nothing is lost.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	coltrace "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/clock"
	"github.com/mercury-apm/mercury/internal/daemon"
)

// Defaults.
const (
	DefaultDomainAttribute = "service.namespace"
	DefaultMaxBodyBytes    = 8 << 20
	DefaultHTTPAddr        = "127.0.0.1:4318"
	DefaultGRPCAddr        = "127.0.0.1:4317"
)

// DefaultBusinessKeys are the attributes that become business keys when none are configured.
var DefaultBusinessKeys = []string{"order_id", "user_id"}

// Config wires the ingest daemon.
type Config struct {
	daemon.Telemetry
	Bus bus.Config // mercury.spans, mercury.events
	// HTTP serves OTLP/HTTP on a listener of its own (nil: only where Routes mounts it).
	HTTP *daemon.Listener
	// GRPC serves OTLP/gRPC (nil: no gRPC).
	GRPC net.Listener
	// BusinessKeys names the span (or resource) attributes that become business keys: "name"
	// keeps the attribute's name, "attribute=name" renames it (app.order_id=order_id). Nil:
	// DefaultBusinessKeys.
	BusinessKeys []string
	// DomainAttribute is the resource attribute naming the domain (default
	// service.namespace); without it a service is its own domain.
	DomainAttribute string
	// MaxBodyBytes bounds a request, compressed and decompressed (default 8 MiB).
	MaxBodyBytes int64
	// WriteTimeout bounds the produce of one request (default 10 s).
	WriteTimeout time.Duration
	// Writer is where records go; nil: a bus writer (tests and benchmarks replace it).
	Writer Writer
	Clock  clock.Clock // nil: the process clock
}

// NotReadyFor is how long Ready reports a failed produce: long enough for a load balancer
// to steer exporters elsewhere, short enough that an idle daemon, whose next produce would
// be the only thing to clear the failure, takes traffic again.
const NotReadyFor = 30 * time.Second

// Writer produces messages synchronously: nil once the bus acknowledged all of them.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// ParseBusinessKeys parses the --business-keys flag: comma-separated names or
// attribute=name pairs.
func ParseBusinessKeys(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Validate fills the defaults and checks what is required.
func (c *Config) Validate() error {
	if c.Writer == nil && len(c.Bus.Brokers) == 0 {
		return errors.New("otlp: Bus.Brokers is required")
	}
	if c.BusinessKeys == nil {
		c.BusinessKeys = DefaultBusinessKeys
	}
	for _, k := range c.BusinessKeys {
		attr, name, renamed := strings.Cut(k, "=")
		if attr == "" || (renamed && name == "") {
			return fmt.Errorf("otlp: business key %q: want an attribute name or attribute=name", k)
		}
	}
	if c.DomainAttribute == "" {
		c.DomainAttribute = DefaultDomainAttribute
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	c.Clock = clock.Or(c.Clock)
	c.Telemetry.Defaults()
	return nil
}

// Ingest is the daemon component. Run it once.
type Ingest struct {
	cfg     Config
	mapping mapping
	w       Writer
	closeW  func() error
	grpc    *grpc.Server
	batches sync.Pool
	m       metrics

	mu       sync.Mutex
	lastErr  error // the last produce's failure, for Ready
	failedAt int64 // when, on cfg.Clock
}

var _ daemon.Component = (*Ingest)(nil)

type metrics struct {
	spans, events, rejected prometheus.Counter
	requests                *prometheus.CounterVec
}

// New checks the configuration, registers the metrics and builds the bus writer (Run closes
// it).
func New(cfg Config) (*Ingest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	in := &Ingest{cfg: cfg, mapping: mapping{businessKeys: map[string]string{}, domainAttribute: cfg.DomainAttribute}}
	for _, k := range cfg.BusinessKeys {
		attr, name, renamed := strings.Cut(k, "=")
		if !renamed {
			name = attr
		}
		in.mapping.businessKeys[attr] = name
	}
	in.batches.New = func() any { return &batch{} }
	in.m = metrics{
		spans:    prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_otlp_spans_total", Help: "OTLP spans produced to mercury.spans."}),
		events:   prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_otlp_exception_events_total", Help: "Exception events produced to mercury.events."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_otlp_rejected_spans_total", Help: "OTLP spans rejected (partial success): bad ids, too large."}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mercury_otlp_requests_total", Help: "Export requests by transport and outcome (HTTP status or gRPC code)."}, []string{"transport", "code"}),
	}
	if err := cfg.Register(in.m.spans, in.m.events, in.m.rejected, in.m.requests); err != nil {
		return nil, fmt.Errorf("otlp: %w", err)
	}
	in.w, in.closeW = cfg.Writer, func() error { return nil }
	if in.w == nil {
		w, err := bus.NewWriter(cfg.Bus, bus.WriterConfig{WriteTimeout: cfg.WriteTimeout})
		if err != nil {
			return nil, err
		}
		in.w, in.closeW = w, func() error { return bus.CloseWriter(w) }
	}
	in.grpc = grpc.NewServer(grpc.MaxRecvMsgSize(int(cfg.MaxBodyBytes)))
	in.grpc.RegisterService(&traceServiceDesc, in)
	return in, nil
}

// Routes mounts OTLP/HTTP on the daemon's listener (`mercury otlp` serves it there).
func (in *Ingest) Routes(mux *http.ServeMux) { mux.Handle("POST /v1/traces", in.HTTPHandler()) }

// Ready is nil unless the last produce failed, less than NotReadyFor ago.
func (in *Ingest) Ready() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.lastErr != nil && in.cfg.Clock.Now()-in.failedAt < int64(NotReadyFor) {
		return fmt.Errorf("otlp: bus failing: %w", in.lastErr)
	}
	return nil
}

// Run serves the configured listeners until ctx ends, lets in-flight exports finish, then
// closes the bus writer.
func (in *Ingest) Run(ctx context.Context) error {
	defer in.closeW()
	g := daemon.NewGroup(ctx)
	if in.cfg.HTTP != nil {
		mux := http.NewServeMux()
		in.Routes(mux)
		g.Go("otlp http", func(ctx context.Context) error { return in.cfg.HTTP.Serve(ctx, mux, daemon.ServerConfig{}) })
	}
	if in.cfg.GRPC != nil {
		g.Go("otlp grpc", func(ctx context.Context) error { return in.serveGRPC(ctx, in.cfg.GRPC) })
	}
	g.Go("otlp", func(ctx context.Context) error { <-ctx.Done(); return nil })
	return g.Wait()
}

func (in *Ingest) serveGRPC(ctx context.Context, ln net.Listener) error {
	done := make(chan error, 1)
	go func() { done <- in.grpc.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve gRPC %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { in.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second): // like the HTTP server's shutdown grace
		in.grpc.Stop()
	}
	<-done
	return nil
}

// export produces the records of one request. It returns the partial success to answer
// with (nil when every span was taken) or the produce error.
func (in *Ingest) export(ctx context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTracePartialSuccess, error) {
	b := in.batches.Get().(*batch)
	b.reset()
	reuse := true
	// A write that failed or timed out may still hold the messages in the writer's queue:
	// their arena must not be reused then.
	defer func() {
		if reuse {
			in.batches.Put(b)
		}
	}()
	if err := in.mapping.add(req, b); err != nil {
		return nil, err
	}
	if len(b.msgs) > 0 {
		wctx, cancel := context.WithTimeout(ctx, in.cfg.WriteTimeout)
		err := in.w.WriteMessages(wctx, b.msgs...)
		cancel()
		in.mu.Lock()
		in.lastErr, in.failedAt = err, in.cfg.Clock.Now()
		in.mu.Unlock()
		if err != nil {
			reuse = false
			return nil, &busError{err}
		}
	}
	in.m.spans.Add(float64(b.spans))
	in.m.events.Add(float64(b.events))
	if b.rejected == 0 {
		return nil, nil
	}
	in.m.rejected.Add(float64(b.rejected))
	msg := b.reason
	if b.rejected > 1 {
		msg = fmt.Sprintf("%d spans rejected; the first: %s", b.rejected, b.reason)
	}
	return &coltrace.ExportTracePartialSuccess{RejectedSpans: b.rejected, ErrorMessage: msg}, nil
}

// busError is a produce failure: the client should retry later.
type busError struct{ err error }

func (e *busError) Error() string {
	return "the bus did not take the spans, retry later: " + e.err.Error()
}
func (e *busError) Unwrap() error { return e.err }
