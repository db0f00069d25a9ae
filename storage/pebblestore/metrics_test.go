package pebblestore_test

import (
	"testing"

	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/storetest"
)

func TestMetricsConformance(t *testing.T) {
	storetest.RunMetrics(t, func(t *testing.T) metricstore.Store {
		s, err := pebblestore.Open(t.TempDir(), pebblestore.Options{CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
