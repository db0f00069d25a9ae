package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/storage"
	"github.com/mercury-apm/mercury/storage/hbaserest/hbasefake"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

func TestOpenMetrics(t *testing.T) {
	fake := hbasefake.New()
	defer fake.Close()
	dir := t.TempDir()
	for name, cfg := range map[string]storage.Config{"embedded": {DataDir: dir}, "hbase": {HBaseURL: fake.URL}} {
		ctx := context.Background()
		s, err := storage.OpenMetrics(ctx, cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		l := metric.Labels{Service: "svc", Operation: "op"}
		p := metricstore.Point{SeriesID: l.ID(), Minute: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC).Unix(), Revision: 1}
		p.Stats.Add(5, metric.Units, false)
		if err := s.Upsert(ctx, []metricstore.Upsert{{Labels: l, Point: p}}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := s.Get(ctx, []metricstore.Key{{SeriesID: p.SeriesID, Minute: p.Minute}})
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: %v %v", name, got, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "metrics")); err != nil {
		t.Fatalf("the embedded metric store is not under the data directory: %v", err)
	}
}
