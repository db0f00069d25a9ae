package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

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
		return hbasestore.NewMetrics(ctx, hbasestore.MetricsConfig{URL: cfg.HBaseURL})
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	db, err := pebblestore.Open(filepath.Join(cfg.DataDir, "metrics"), pebblestore.Options{})
	if errors.Is(err, pebbledb.ErrLocked) {
		return nil, fmt.Errorf("storage: %w; stop the other aggregator phase 2 or query using %s, or give this one another --data", err, cfg.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: embedded metric store: %w", err)
	}
	return db, nil
}
