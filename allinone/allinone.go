// Package allinone is `mercury up`: the whole pipeline in one process on embedded defaults —
// the Kafka-protocol broker, shippers for local spools, OTLP ingest, the collector into
// Pebble, the query API and UI, optionally the instrumented demo services. It is a list of
// the same New calls the separate daemons make, run in one daemon.Group and served on one
// listener (OTLP on its own, at the ports exporters expect).
//
// The components meet exactly as when they run apart: through Kafka topics and the query
// HTTP API, never by calling each other.
package allinone

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/agent/ship"
	"github.com/mercury-apm/mercury/aggregator"
	"github.com/mercury-apm/mercury/alerter"
	"github.com/mercury-apm/mercury/alerter/rules"
	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/collector"
	"github.com/mercury-apm/mercury/demo"
	"github.com/mercury-apm/mercury/ingest/otlp"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/query"
	"github.com/mercury-apm/mercury/query/alerts"
	"github.com/mercury-apm/mercury/storage"
	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// Config places the pipeline. Zero values take the defaults.
type Config struct {
	daemon.Telemetry
	DataDir   string // default ./data; a restart reuses it
	KafkaAddr string // embedded broker (default 127.0.0.1:9092; port 0 picks one)
	HTTPAddr  string // query API and UI (default 127.0.0.1:8080; port 0 picks one)
	// OTLPHTTPAddr and OTLPGRPCAddr are where OpenTelemetry exporters send traces (default
	// 127.0.0.1:4318 and 127.0.0.1:4317; port 0 picks one; "off" disables).
	OTLPHTTPAddr, OTLPGRPCAddr string
	AdminToken                 string        // for the query API's admin endpoints ("": disabled)
	Spools                     []string      // extra agent spools to ship (services running beside it)
	Retention                  time.Duration // keep traces this long (default 7 days)
	MetricRetention            time.Duration // keep minute points this long (default 30 days)
	Demo                       bool          // run the demo services and their traffic
	DemoEvery                  time.Duration // between demo requests (negative: no traffic)
}

// Validate fills the defaults.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.KafkaAddr == "" {
		c.KafkaAddr = "127.0.0.1:9092"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8080"
	}
	if c.OTLPHTTPAddr == "" {
		c.OTLPHTTPAddr = otlp.DefaultHTTPAddr
	}
	if c.OTLPGRPCAddr == "" {
		c.OTLPGRPCAddr = otlp.DefaultGRPCAddr
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.MetricRetention <= 0 {
		c.MetricRetention = 30 * 24 * time.Hour
	}
	if c.Registry == nil {
		t := daemon.NewTelemetry(c.Logger)
		c.Telemetry = t
	}
	c.Telemetry.Defaults()
	return nil
}

// Pipeline is the started pipeline; Run runs it.
type Pipeline struct {
	cfg        Config
	broker     *broker.Broker
	stores     *storage.Stores
	metrics    metricstore.Store
	alerts     alertstore.Store
	listener   *daemon.Listener
	url        string
	otlpHTTP   *daemon.Listener
	otlpGRPC   net.Listener
	otlpURL    string // OTLP/HTTP base URL
	otlpAddr   string // OTLP/gRPC address
	demo       *demo.Demo
	components []daemon.Component
}

// New starts the broker (the others need its address) and builds every component. Run it,
// or Close it if it will not run.
func New(ctx context.Context, cfg Config) (_ *Pipeline, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pipeline{cfg: cfg}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.broker, err = broker.New(ctx, broker.Config{DataDir: filepath.Join(cfg.DataDir, "broker"), Addr: cfg.KafkaAddr, Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	bc := bus.Config{Brokers: []string{p.broker.Addr()}}
	if p.stores, err = storage.Open(ctx, storage.Config{DataDir: cfg.DataDir, Retention: cfg.Retention}); err != nil {
		return nil, err
	}
	if p.listener, err = daemon.Listen(cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("query API: %w", err)
	}
	p.url = p.listener.URL()
	if p.metrics, err = storage.OpenMetrics(ctx, storage.Config{DataDir: cfg.DataDir}); err != nil {
		return nil, err
	}
	if p.alerts, err = storage.OpenAlerts(ctx, storage.Config{DataDir: cfg.DataDir}); err != nil {
		return nil, err
	}
	col, err := collector.New(collector.Config{Telemetry: cfg.Telemetry, Bus: bc, Store: p.stores.Traces, MaxAge: cfg.Retention})
	if err != nil {
		return nil, err
	}
	phase1, err := aggregator.New(aggregator.Config{Telemetry: cfg.Telemetry, Phase: 1, Bus: bc})
	if err != nil {
		return nil, err
	}
	phase2, err := aggregator.New(aggregator.Config{Telemetry: cfg.Telemetry, Phase: 2, Bus: bc, Store: p.metrics})
	if err != nil {
		return nil, err
	}
	al, err := alerter.New(alerter.Config{Telemetry: cfg.Telemetry, Bus: bc, Store: p.alerts, LinkBase: p.url,
		History: rules.StoreHistory{Store: p.metrics}, Quantiles: rules.SketchQuantiles})
	if err != nil {
		return nil, err
	}
	board, err := alerts.New(alerts.Config{Store: p.alerts})
	if err != nil {
		return nil, err
	}
	q, err := query.New(query.Config{Telemetry: cfg.Telemetry, Bus: bc, Traces: p.stores.Traces, AdminToken: cfg.AdminToken,
		AgentConfigPath: filepath.Join(cfg.DataDir, "agent-config.json"),
		Metrics:         p.metrics, Rooms: []query.Room{board}, Alerts: board})
	if err != nil {
		return nil, err
	}
	retention := daemon.Task(func(ctx context.Context) error { return p.stores.RunRetention(ctx, cfg.Logger) })
	metricRetention := daemon.Task(func(ctx context.Context) error {
		return storage.Keep(ctx, cfg.Logger, p.metrics, cfg.MetricRetention)
	})
	p.components = []daemon.Component{col, phase1, phase2, al, q, retention, metricRetention}
	if cfg.OTLPHTTPAddr != "off" {
		if p.otlpHTTP, err = daemon.Listen(cfg.OTLPHTTPAddr); err != nil {
			return nil, fmt.Errorf("OTLP/HTTP ingest (another collector on the port? move or turn it off): %w", err)
		}
		p.otlpURL = p.otlpHTTP.URL()
	}
	if cfg.OTLPGRPCAddr != "off" {
		if p.otlpGRPC, err = net.Listen("tcp", cfg.OTLPGRPCAddr); err != nil {
			return nil, fmt.Errorf("OTLP/gRPC ingest (another collector on the port? move or turn it off): %w", err)
		}
		p.otlpAddr = p.otlpGRPC.Addr().String()
	}
	if p.otlpHTTP != nil || p.otlpGRPC != nil {
		in, err := otlp.New(otlp.Config{Telemetry: cfg.Telemetry, Bus: bc, HTTP: p.otlpHTTP, GRPC: p.otlpGRPC})
		if err != nil {
			return nil, err
		}
		p.components = append(p.components, otlpOnly{in})
	}
	for _, sp := range cfg.Spools {
		sh, err := ship.New(ship.Config{Spool: sp, Bus: bc, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("shipper %s: %w", sp, err)
		}
		// One registry, several shippers: label each one's series with its spool.
		if err := prometheus.WrapRegistererWith(prometheus.Labels{"spool": sp}, cfg.Registry).Register(sh.Collector()); err != nil {
			return nil, err
		}
		p.components = append(p.components, sh)
	}
	if cfg.Demo {
		if p.demo, err = demo.New(ctx, demo.Config{SpoolRoot: filepath.Join(cfg.DataDir, "spool"), ConfigURL: p.url + "/api/v1/agent-config",
			Interval: cfg.DemoEvery, Logger: cfg.Logger, Bus: bc, Registry: cfg.Registry}); err != nil {
			return nil, err
		}
		p.components = append(p.components, p.demo)
	}
	return p, nil
}

// otlpOnly serves OTLP on its own listeners only: the query listener keeps to the API and UI.
type otlpOnly struct{ *otlp.Ingest }

func (otlpOnly) Routes(*http.ServeMux) {}

// OTLPHTTPURL is the OTLP/HTTP base URL ("" when disabled): exporters post to /v1/traces.
func (p *Pipeline) OTLPHTTPURL() string { return p.otlpURL }

// OTLPGRPCAddr is the OTLP/gRPC address ("" when disabled).
func (p *Pipeline) OTLPGRPCAddr() string { return p.otlpAddr }

// QueryURL is the base URL of the API and UI.
func (p *Pipeline) QueryURL() string { return p.url }

// KafkaAddr is the embedded broker's address.
func (p *Pipeline) KafkaAddr() string { return p.broker.Addr() }

// Demo is the demo services, when configured.
func (p *Pipeline) Demo() *demo.Demo { return p.demo }

// Stores are the embedded stores (for tests and tools in the same process).
func (p *Pipeline) Stores() *storage.Stores { return p.stores }

// Run runs every component until ctx ends or one fails, then stops them all and closes the
// stores and the broker (last: the others drain through it).
func (p *Pipeline) Run(ctx context.Context) error {
	defer p.Close()
	ln := p.listener
	p.listener, p.otlpHTTP, p.otlpGRPC = nil, nil, nil // served, and closed, by daemon.Run and the OTLP component
	return daemon.Run(ctx, daemon.Options{Name: "mercury up", Telemetry: p.cfg.Telemetry, Listener: ln, Components: p.components})
}

// Close releases what New opened; Run does it itself.
func (p *Pipeline) Close() {
	if p.demo != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		p.demo.Close(ctx)
		cancel()
	}
	if p.listener != nil {
		p.listener.Close() // already closed when it was served
		p.listener = nil
	}
	if p.otlpHTTP != nil {
		p.otlpHTTP.Close()
		p.otlpHTTP = nil
	}
	if p.otlpGRPC != nil {
		p.otlpGRPC.Close()
		p.otlpGRPC = nil
	}
	if p.stores != nil {
		p.stores.Close()
		p.stores = nil
	}
	if p.metrics != nil {
		p.metrics.Close()
		p.metrics = nil
	}
	if p.alerts != nil {
		p.alerts.Close()
		p.alerts = nil
	}
	if p.broker != nil {
		p.broker.Close()
		p.broker = nil
	}
}
