package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/hbasestore"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebbledb"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

// OpenMetrics opens the metric store the configuration names: HBase (mercury:metrics) when
// HBaseURL is set, else embedded Pebble under DataDir/metrics. It is separate from Open
// because only the aggregator's phase 2 and the query service read or write metrics, and an
// embedded store can be opened by one process only. Close it when done.
func OpenMetrics(ctx context.Context, cfg Config) (metricstore.Store, error) {
	if cfg.HBaseURL != "" {
		return dial(ctx, "HBase", func() (metricstore.Store, error) {
			s, err := hbasestore.NewMetrics(ctx, hbasestore.MetricsConfig{URL: cfg.HBaseURL})
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return s, nil
		})
	}
	db, err := pebblestore.Open(cfg.embedded("metrics"), pebblestore.Options{})
	if err != nil {
		return nil, embeddedErr("metric", "aggregator phase 2 or query", cfg, err)
	}
	return db, nil
}

// OpenAlerts opens the alert store: HBase (mercury:alerts, mercury:alert_rules,
// mercury:alert_events, mercury:alert_state) when HBaseURL is set, which the alerter and
// the query service can share from different hosts; else embedded Pebble under
// DataDir/alerts, which only one process can open (the alerter, or `mercury up`, which
// gives it to its query API too). Close it when done.
func OpenAlerts(ctx context.Context, cfg Config) (alertstore.Store, error) {
	if cfg.HBaseURL != "" {
		return dial(ctx, "HBase", func() (alertstore.Store, error) {
			s, err := hbasestore.NewAlerts(ctx, hbasestore.AlertsConfig{URL: cfg.HBaseURL})
			if err != nil {
				return nil, err
			}
			return s, nil
		})
	}
	s, err := pebblestore.OpenAlerts(cfg.embedded("alerts"))
	if err != nil {
		return nil, embeddedErr("alert", "alerter", cfg, err)
	}
	return s, nil
}

// embedded is the directory of one embedded store.
func (c Config) embedded(name string) string {
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	return filepath.Join(c.DataDir, name)
}

// pebbleLocked: Pebble's own directory lock is taken, by another process (EWOULDBLOCK from
// flock) or by this one (Pebble says so only in its message).
func pebbleLocked(err error) bool {
	return errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held by current process")
}

// embeddedErr says what to do when an embedded store cannot be opened, most often because
// another process holds it.
func embeddedErr(what, users string, cfg Config, err error) error {
	if errors.Is(err, pebbledb.ErrLocked) || pebbleLocked(err) {
		return fmt.Errorf("storage: %w; stop the other %s using %s, give this one another --data, or share the store in HBase (--hbase)", err, users, cfg.embedded(""))
	}
	return fmt.Errorf("storage: embedded %s store: %w", what, err)
}
