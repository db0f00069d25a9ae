// Package suite runs the whole Mercury pipeline in one process on embedded defaults: the
// Kafka-protocol broker, shippers for local spools, the collector into Pebble, and the query
// API — optionally with instrumented demo services. It is what `mercury up` runs.
//
// The daemons are wired exactly as when they run apart: through Kafka topics and the query
// HTTP API, never by calling each other.
package suite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mercury-apm/mercury/agent/ship"
	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/collector"
	"github.com/mercury-apm/mercury/demo"
	"github.com/mercury-apm/mercury/query"
	"github.com/mercury-apm/mercury/tracestore"
	"github.com/mercury-apm/mercury/tracestore/pebblestore"
)

// Config places the suite. Zero values take the defaults.
type Config struct {
	DataDir    string        // default ./data; a restart reuses it
	KafkaAddr  string        // embedded broker (default 127.0.0.1:9092; port 0 picks one)
	HTTPAddr   string        // query API and UI (default 127.0.0.1:8080)
	AdminToken string        // for the query API's admin endpoints ("": disabled)
	Spools     []string      // extra agent spools to ship (services running beside the suite)
	Retention  time.Duration // keep traces this long (default 7 days)
	Demo       bool          // run the demo services and their traffic
	DemoEvery  time.Duration
	Logger     *slog.Logger
}

// Suite is a running pipeline.
type Suite struct {
	cfg      Config
	broker   *broker.Broker
	db       *pebblestore.Store
	store    *tracestore.Store
	queryURL string
	demo     *demo.Demo
	http     *http.Server
	metrics  *prometheus.Registry // every component's metrics, served at the API's /metrics
	cancel   context.CancelFunc   // stops the daemons
	wg       sync.WaitGroup       // the daemons
	errs     chan error
}

// Start brings everything up. Stop it by cancelling ctx and calling Wait.
func Start(ctx context.Context, cfg Config) (_ *Suite, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.KafkaAddr == "" {
		cfg.KafkaAddr = "127.0.0.1:9092"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	s := &Suite{cfg: cfg, errs: make(chan error, 8), metrics: prometheus.NewRegistry()}
	s.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctx, s.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			s.shutdown()
		}
	}()
	if s.broker, err = broker.Start(ctx, broker.Config{DataDir: filepath.Join(cfg.DataDir, "broker"), Addr: cfg.KafkaAddr, Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	bc := bus.Config{Brokers: []string{s.broker.Addr()}}
	if err = bus.EnsureTopics(ctx, bc, nil); err != nil {
		return nil, err
	}
	if s.db, err = pebblestore.Open(filepath.Join(cfg.DataDir, "traces"), pebblestore.Options{}); err != nil {
		return nil, err
	}
	s.store = tracestore.New(s.db, s.db)

	if err = s.startCollector(ctx, bc); err != nil {
		return nil, err
	}
	if err = s.startQuery(ctx, bc); err != nil {
		return nil, err
	}
	for _, sp := range cfg.Spools {
		if err = s.startShipper(ctx, bc, sp); err != nil {
			return nil, err
		}
	}
	if cfg.Demo {
		interval := cfg.DemoEvery
		if s.demo, err = demo.Start(ctx, demo.Config{SpoolRoot: filepath.Join(cfg.DataDir, "spool"), ConfigURL: s.queryURL + "/api/v1/agent-config", Interval: interval, Logger: cfg.Logger, Bus: bc, Registry: s.metrics}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// QueryURL is the base URL of the API and UI.
func (s *Suite) QueryURL() string { return s.queryURL }

// KafkaAddr is the embedded broker's address.
func (s *Suite) KafkaAddr() string { return s.broker.Addr() }

// Demo is the demo services, when running.
func (s *Suite) Demo() *demo.Demo { return s.demo }

// Store is the embedded trace store (for tests and tools in the same process).
func (s *Suite) Store() *tracestore.Store { return s.store }

// go runs a daemon; its failure is reported by Wait.
func (s *Suite) goRun(name string, run func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(); err != nil {
			err = fmt.Errorf("%s: %w", name, err)
			select {
			case s.errs <- err: // Wait reports the first; the rest are logged
			default:
				s.cfg.Logger.Error("suite: daemon failed", "err", err)
			}
		}
	}()
}

func (s *Suite) startCollector(ctx context.Context, bc bus.Config) error {
	c, err := collector.NewOnBus(bc, collector.Config{Store: s.store, MaxAge: s.cfg.Retention, Registry: s.metrics, Logger: s.cfg.Logger})
	if err != nil {
		return err
	}
	s.goRun("retention", func() error {
		tracestore.KeepFor(ctx, s.db, s.cfg.Retention, time.Hour, s.cfg.Logger)
		return nil
	})
	s.goRun("collector", func() error { return c.Run(ctx) })
	return nil
}

func (s *Suite) startQuery(ctx context.Context, bc bus.Config) error {
	d, err := query.NewDaemon(bc, query.Config{Store: s.store, AdminToken: s.cfg.AdminToken, Logger: s.cfg.Logger, Registry: s.metrics},
		filepath.Join(s.cfg.DataDir, "agent-config.json"))
	if err != nil {
		return err
	}
	s.goRun("heartbeats", func() error { return d.RunHeartbeats(ctx) })
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("query API: %w", err)
	}
	s.queryURL = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	s.goRun("query API", func() error {
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return nil
}

func (s *Suite) startShipper(ctx context.Context, bc bus.Config, spool string) error {
	sh, err := ship.New(ship.Config{Spool: spool, Bus: bc, Logger: s.cfg.Logger})
	if err != nil {
		return fmt.Errorf("shipper %s: %w", spool, err)
	}
	// One registry, several shippers: label each one's series with its spool.
	if err := prometheus.WrapRegistererWith(prometheus.Labels{"spool": spool}, s.metrics).Register(sh.Collector()); err != nil {
		return err
	}
	s.goRun("shipper "+spool, func() error {
		if err := sh.Run(ctx); err != nil && ctx.Err() == nil {
			return err
		}
		return nil
	})
	return nil
}

// Wait blocks until ctx ends or a daemon fails, then shuts everything down.
func (s *Suite) Wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.errs:
	}
	s.shutdown()
	return err
}

// shutdown stops in dependency order: the demo (its agents flush their spools), then the
// daemons, then the store they write, and the broker last. Spool data not shipped yet stays
// on disk and is shipped at the next start.
func (s *Suite) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if s.demo != nil {
		s.demo.Close(ctx)
	}
	s.cancel()
	if s.http != nil {
		s.http.Shutdown(ctx)
	}
	s.wg.Wait()
	if s.db != nil {
		s.db.Close()
	}
	if s.broker != nil {
		s.broker.Close()
	}
}
