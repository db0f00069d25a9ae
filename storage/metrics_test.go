package storage_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/storage"
	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/esstore/esfake"
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

// TestOpenAlerts: the embedded alert store under the data directory has one user, and the
// second is told what to do; HBase serves any number.
func TestOpenAlerts(t *testing.T) {
	fake := hbasefake.New()
	defer fake.Close()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := storage.OpenAlerts(ctx, storage.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := storage.OpenAlerts(ctx, storage.Config{DataDir: dir}); err == nil || !strings.Contains(err.Error(), "--hbase") {
		t.Fatalf("second embedded open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "alerts")); err != nil {
		t.Fatalf("the embedded alert store is not under the data directory: %v", err)
	}
	var shared [2]alertstore.Store
	for i := range shared {
		if shared[i], err = storage.OpenAlerts(ctx, storage.Config{HBaseURL: fake.URL}); err != nil {
			t.Fatal(err)
		}
		defer shared[i].Close()
	}
	a := alertstore.Alert{ID: "a", Key: "k", State: alertstore.StateFiring, Summary: "seen by both"}
	if _, err := shared[0].CreateAlert(ctx, a); err != nil {
		t.Fatal(err)
	}
	if got, err := shared[1].GetAlert(ctx, "a"); err != nil || got.Summary != a.Summary {
		t.Fatalf("the other client: %+v %v", got, err)
	}
}

// TestOpenWaitsForTheStore: a daemon started while HBase or Elasticsearch refuses comes up
// once they answer again (far more refusals than the client's own retries absorb); one that
// cannot ever work (a 403) fails at once, and a wait ends with its context.
func TestOpenWaitsForTheStore(t *testing.T) {
	hb, es := hbasefake.New(), esfake.New()
	defer hb.Close()
	defer es.Close()
	ctx := context.Background()
	hb.Fail("", "", http.StatusServiceUnavailable, 6)
	ms, err := storage.OpenMetrics(ctx, storage.Config{HBaseURL: hb.URL})
	if err != nil {
		t.Fatalf("metric store after an outage: %v", err)
	}
	ms.Close()
	hb.Fail("", "", http.StatusServiceUnavailable, 6)
	as, err := storage.OpenAlerts(ctx, storage.Config{HBaseURL: hb.URL})
	if err != nil {
		t.Fatalf("alert store after an outage: %v", err)
	}
	as.Close()
	hb.Fail("", "", http.StatusServiceUnavailable, 6)
	es.FailRequests(25, http.StatusTooManyRequests)
	s, err := storage.Open(ctx, storage.Config{ESURL: es.URL, HBaseURL: hb.URL})
	if err != nil {
		t.Fatalf("trace stores after an outage: %v", err)
	}
	s.Close()

	hb.Fail("", "", http.StatusForbidden, 1)
	if _, err := storage.OpenMetrics(ctx, storage.Config{HBaseURL: hb.URL}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("a 403 must fail at once: %v", err)
	}
	hb.Heal()
	hb.Fail("", "", http.StatusServiceUnavailable, 1_000_000)
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := storage.OpenAlerts(short, storage.Config{HBaseURL: hb.URL}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a wait cut short must return the store's error: %v", err)
	}
}
