// Package storage opens Mercury's stores from one configuration: embedded Pebble under a
// data directory (`mercury up`, one machine), or Elasticsearch for the trace index and HBase
// (through its REST gateway) for the rows. The contracts live in the *store subpackages
// (tracestore, ...), the backends beside them (pebblestore, esstore, hbasestore), each built
// on the shared engine clients; the conformance suites are in storetest.
package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/esstore"
	"github.com/mercury-apm/mercury/storage/hbasestore"
	"github.com/mercury-apm/mercury/storage/pebbledb"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// Config chooses the backends. With ESURL empty everything is embedded under DataDir.
type Config struct {
	DataDir string // embedded stores (default ./data)
	// ESURL is the Elasticsearch URL for the trace index (and the rows, unless HBaseURL).
	ESURL, ESUser, ESPassword string
	// HBaseURL is the HBase REST gateway for trace rows (needs ESURL for the index).
	HBaseURL string
	// Retention: how long traces are kept (default 7 days). HBase expires by its TTL.
	Retention time.Duration
}

// Stores is what Open returns. Close it once.
type Stores struct {
	Traces    *tracestore.Store
	retention tracestore.Retention
	keep      time.Duration
	closers   []func() error
}

// Open opens the configured stores.
func Open(ctx context.Context, cfg Config) (_ *Stores, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	s := &Stores{keep: cfg.Retention}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if cfg.ESURL == "" {
		if cfg.HBaseURL != "" {
			return nil, errors.New("storage: HBase holds rows only: it needs Elasticsearch for the index")
		}
		dir := filepath.Join(cfg.DataDir, "traces")
		db, err := pebblestore.Open(dir, pebblestore.Options{})
		if errors.Is(err, pebbledb.ErrLocked) {
			return nil, fmt.Errorf("storage: %w; stop the other `mercury up`, collector or query using %s, or give this one another --data", err, cfg.DataDir)
		}
		if err != nil {
			return nil, fmt.Errorf("storage: embedded trace store: %w", err)
		}
		s.closers = append(s.closers, db.Close)
		s.Traces, s.retention = tracestore.New(db, db), db
		return s, nil
	}
	es, err := dial(ctx, "Elasticsearch", func() (*esstore.Store, error) {
		return esstore.New(ctx, esstore.Config{Addresses: []string{cfg.ESURL}, Username: cfg.ESUser, Password: cfg.ESPassword, OmitSpans: cfg.HBaseURL != ""})
	})
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() error { es.Close(); return nil })
	s.retention = es
	if cfg.HBaseURL == "" {
		s.Traces = tracestore.New(es, es)
		return s, nil
	}
	hb, err := dial(ctx, "HBase", func() (*hbasestore.Store, error) {
		return hbasestore.New(ctx, hbasestore.Config{URL: cfg.HBaseURL, TTL: cfg.Retention})
	})
	if err != nil {
		return nil, err
	}
	s.Traces = tracestore.New(es, hb)
	return s, nil
}

// dial opens a remote store, waiting out a server that is down or overloaded: a daemon
// (re)started during a store outage comes up when the store does, instead of exiting into a
// crash loop. A permanent error (a bad URL, refused credentials) returns at once, and so
// does the last error when ctx ends.
func dial[S any](ctx context.Context, what string, open func() (S, error)) (S, error) {
	b := retry.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		s, err := open()
		if err == nil || !retry.IsRetryable(err) {
			return s, err
		}
		slog.Warn("storage: "+what+" unavailable, retrying", "err", err)
		if b.Wait(ctx) != nil {
			return s, err
		}
	}
}

// RunRetention drops data older than the retention now and then hourly until ctx ends: the
// process that writes the stores runs it. Failures are logged and retried at the next tick.
func (s *Stores) RunRetention(ctx context.Context, log *slog.Logger) error {
	if s.retention == nil {
		<-ctx.Done()
		return nil
	}
	return Keep(ctx, log, s.retention, s.keep)
}

// Dropper is what retention needs of a store: tracestore.Retention, metricstore.Store.
type Dropper interface {
	DropBefore(ctx context.Context, cutoff time.Time) error
}

// Keep drops what d holds beyond keep, now and then hourly, until ctx ends. Failures are
// logged and retried at the next tick.
func Keep(ctx context.Context, log *slog.Logger, d Dropper, keep time.Duration) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := d.DropBefore(ctx, time.Now().Add(-keep)); err != nil && ctx.Err() == nil {
			log.Warn("storage: retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close closes every store, newest first.
func (s *Stores) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}
