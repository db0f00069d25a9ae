// Package reconciletest starts what an audit reads, for the audit's tests: the embedded
// broker and empty embedded trace and metric stores, closed when the test ends.
package reconciletest

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/storage"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

// Env is a broker and the two stores.
type Env struct {
	Bus     bus.Config
	Traces  *pebblestore.Store
	Metrics metricstore.Store
}

// Start runs the broker and opens the stores in a temporary directory.
func Start(t *testing.T, ctx context.Context) Env {
	t.Helper()
	b, err := broker.New(ctx, broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	dir := t.TempDir()
	traces, err := pebblestore.Open(filepath.Join(dir, "traces"), pebblestore.Options{CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { traces.Close() })
	ms, err := storage.OpenMetrics(ctx, storage.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	return Env{Bus: bus.Config{Brokers: []string{b.Addr()}}, Traces: traces, Metrics: ms}
}
