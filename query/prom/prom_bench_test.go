package prom_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/query/prom"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

// BenchmarkQueryRange24h: qps and p99 of one service's series over 24 hours at a 1-minute
// step (1440 points), through the HTTP API.
func BenchmarkQueryRange24h(b *testing.B) {
	store, err := pebblestore.Open(b.TempDir(), pebblestore.Options{CacheBytes: 64 << 20, MemTableBytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	day := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	var ups []metricstore.Upsert
	for i := range 1440 {
		var st metric.Stats
		for k := range 100 {
			st.Add(int64(1+k%50)*1e6, metric.Units, k%20 == 0)
		}
		ups = append(ups, metricstore.Upsert{Labels: h1, Point: metricstore.Point{SeriesID: h1.ID(), Minute: day.Unix() + int64(60*i), Revision: 1, Stats: st}})
	}
	if err := store.Upsert(context.Background(), ups); err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	rt, _ := api.NewRouter(mux, prometheus.NewRegistry(), slog.New(slog.DiscardHandler), "")
	(&prom.Room{Store: store}).Register(rt)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for name, q := range map[string]string{
		"qps": `sum(rate(mercury_span_calls_total{service="api"}[5m]))`,
		"p99": `histogram_quantile(0.99, sum(rate(mercury_span_duration_seconds{service="api"}[5m])))`,
	} {
		b.Run(name, func(b *testing.B) {
			form := url.Values{"query": {q}, "start": {strconv.FormatInt(day.Unix(), 10)},
				"end": {strconv.FormatInt(day.Add(24*time.Hour-time.Minute).Unix(), 10)}, "step": {"60"}}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := http.PostForm(srv.URL+"/api/v1/query_range", form)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(err, resp.StatusCode)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
