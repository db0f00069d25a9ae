package hbasestore_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/hbaserest/hbasefake"
	"github.com/mercury-apm/mercury/storage/hbasestore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/storetest"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fastRetry = retry.Backoff{Attempts: 4, Min: time.Millisecond, Max: 5 * time.Millisecond}

func fake(t *testing.T) *hbasefake.Server {
	srv := hbasefake.New()
	t.Cleanup(srv.Close)
	return srv
}

func newStore(t *testing.T, url string) *hbasestore.Store {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	s, err := hbasestore.New(context.Background(), hbasestore.Config{URL: url, Backoff: fastRetry, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// backends: the fake always, a real gateway when MERCURY_TEST_HBASE_URL is set.
func backends(t *testing.T, run func(t *testing.T, url func(t *testing.T) string)) {
	t.Run("fake", func(t *testing.T) { run(t, func(t *testing.T) string { return fake(t).URL }) })
	t.Run("real", func(t *testing.T) {
		u := os.Getenv("MERCURY_TEST_HBASE_URL")
		if u == "" {
			t.Skip("MERCURY_TEST_HBASE_URL not set: no real HBase REST gateway to test against")
		}
		run(t, func(*testing.T) string { return u })
	})
}

func TestRows(t *testing.T) {
	backends(t, func(t *testing.T, url func(*testing.T) string) {
		storetest.RunRows(t, func(t *testing.T) tracestore.Rows { return newStore(t, url(t)) })
	})
}

// Pebble index + HBase rows: the distributed layout's read path with an embedded index.
func TestStore(t *testing.T) {
	backends(t, func(t *testing.T, url func(*testing.T) string) {
		storetest.RunStore(t, func(t *testing.T) *tracestore.Store {
			idx, err := pebblestore.Open(t.TempDir(), pebblestore.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = idx.Close() })
			return tracestore.New(idx, newStore(t, url(t)))
		})
	})
}

func TestCreatesTablesWithTTL(t *testing.T) {
	srv := fake(t)
	s, err := hbasestore.New(context.Background(), hbasestore.Config{URL: srv.URL, TTL: 72 * time.Hour, Backoff: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	_ = s
	for _, table := range []string{"mercury:traces", "mercury:traces_shadow"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/"+table+"/schema", nil)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s schema: %d", table, resp.StatusCode)
		}
	}
	// A second New finds the tables and creates nothing.
	if _, err := hbasestore.New(context.Background(), hbasestore.Config{URL: srv.URL}); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls(http.MethodPut, "schema"); n != 2 {
		t.Fatalf("schema PUTs = %d, want 2", n)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestOneMultiget(t *testing.T) {
	srv := fake(t)
	s := newStore(t, srv.URL)
	f := storetest.NewFixture()
	ctx := context.Background()
	if err := s.PutSpans(ctx, f.Spans); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls(http.MethodPut, "put"); n != 2 {
		t.Fatalf("PutSpans took %d PUTs, want one per table", n)
	}
	m, err := s.GetTraces(ctx, []tracestore.TraceID{f.T1, f.T2, f.T3})
	if err != nil || len(m) != 3 {
		t.Fatalf("GetTraces: %d, %v", len(m), err)
	}
	if n := srv.Calls(http.MethodGet, "multiget"); n != 1 {
		t.Fatalf("GetTraces of production traces took %d multigets, want 1", n)
	}
}

func TestRetriesThenSucceeds(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		srv := fake(t)
		s := newStore(t, srv.URL)
		f := storetest.NewFixture()
		ctx := context.Background()
		srv.Fail(http.MethodPut, "put", status, 3)
		if err := s.PutSpans(ctx, f.Spans); err != nil {
			t.Fatalf("status %d: PutSpans: %v", status, err)
		}
		srv.Fail(http.MethodGet, "multiget", status, 2)
		if m, err := s.GetTraces(ctx, []tracestore.TraceID{f.T1}); err != nil || len(m[f.T1]) != 3 {
			t.Fatalf("status %d: GetTraces: %v", status, err)
		}
	}
}

func TestErrorClassification(t *testing.T) {
	srv := fake(t)
	s := newStore(t, srv.URL)
	f := storetest.NewFixture()
	ctx := context.Background()

	srv.Fail(http.MethodPut, "put", http.StatusServiceUnavailable, 100)
	err := s.PutSpans(ctx, f.Spans)
	if !retry.IsRetryable(err) || errors.Is(err, retry.ErrPermanent) {
		t.Fatalf("persistent 503: %v, want retryable", err)
	}
	srv2 := fake(t)
	s2 := newStore(t, srv2.URL)
	srv2.Fail(http.MethodPut, "put", http.StatusBadRequest, 1)
	err = s2.PutSpans(ctx, f.Spans)
	if !errors.Is(err, retry.ErrPermanent) || retry.IsRetryable(err) {
		t.Fatalf("400: %v, want permanent", err)
	}
	if n := srv2.Calls(http.MethodPut, "put"); n != 1 {
		t.Fatalf("permanent error retried: %d PUTs", n)
	}
	if _, err := hbasestore.New(ctx, hbasestore.Config{URL: "http://127.0.0.1:1", Backoff: fastRetry}); !retry.IsRetryable(err) {
		t.Fatalf("connection refused: %v, want retryable", err)
	}
	if _, err := hbasestore.New(ctx, hbasestore.Config{URL: "not a url"}); !errors.Is(err, retry.ErrPermanent) {
		t.Fatalf("bad URL: %v, want permanent", err)
	}
}

func TestScanTraces(t *testing.T) {
	srv := fake(t)
	s := newStore(t, srv.URL)
	f := storetest.NewFixture()
	ctx := context.Background()
	if err := s.PutSpans(ctx, f.Spans); err != nil {
		t.Fatal(err)
	}
	got := map[tracestore.TraceID]int{}
	// batch 2 splits three-span rows across pages.
	err := s.ScanTraces(ctx, false, 2, func(id tracestore.TraceID, spans []schemas.Span) error {
		if got[id] != 0 {
			t.Errorf("trace %s delivered twice", id)
		}
		got[id] = len(spans)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []tracestore.TraceID{f.T1, f.T2, f.T3, f.CrossDay, f.Hostile, f.Forge} {
		if got[id] != len(f.Trace(id)) {
			t.Errorf("trace %s: %d spans, want %d", id, got[id], len(f.Trace(id)))
		}
	}
	if len(got) != 6 {
		t.Errorf("%d traces, want 6 (the dyed one lives in the shadow table)", len(got))
	}
	stop := errors.New("stop")
	if err := s.ScanTraces(ctx, true, 1, func(tracestore.TraceID, []schemas.Span) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("callback error: %v", err)
	}
	if n := srv.OpenScanners(); n != 0 {
		t.Fatalf("%d scanners left open", n)
	}
}
