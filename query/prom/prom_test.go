package prom_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
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
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

var (
	h1 = metric.Labels{Domain: "shop", Service: "api", Operation: "POST /orders", Kind: schemas.KindServer, Host: "h1"}
	h2 = metric.Labels{Domain: "shop", Service: "api", Operation: "POST /orders", Kind: schemas.KindServer, Host: "h2"}
)

// stored writes 20 minutes of both series (minute i: 10+i spans on h1, 5 on h2, durations
// growing) and returns the server and each minute's stats per series.
func stored(t *testing.T) (*httptest.Server, map[metric.Labels][]metric.Stats) {
	t.Helper()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	all := map[metric.Labels][]metric.Stats{}
	var ups []metricstore.Upsert
	for i := range 20 {
		for _, l := range []metric.Labels{h1, h2} {
			var st metric.Stats
			n := 5
			if l == h1 {
				n = 10 + i
			}
			for k := range n {
				st.Add(int64(1+k)*int64(i+1)*1e6, metric.Units, k%4 == 0)
			}
			all[l] = append(all[l], st)
			ups = append(ups, metricstore.Upsert{Labels: l, Point: metricstore.Point{SeriesID: l.ID(), Minute: t0.Unix() + int64(60*i), Revision: 1, Stats: st}})
		}
	}
	if err := store.Upsert(context.Background(), ups); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	rt, err := api.NewRouter(mux, prometheus.NewRegistry(), slog.New(slog.DiscardHandler), "")
	if err != nil {
		t.Fatal(err)
	}
	(&prom.Room{Store: store, Now: func() time.Time { return t0.Add(30 * time.Minute) }}).Register(rt)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, all
}

type result struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

func query(t *testing.T, srv *httptest.Server, q string, at time.Time) (result, int) {
	t.Helper()
	resp, err := http.PostForm(srv.URL+"/api/v1/query", url.Values{"query": {q}, "time": {strconv.FormatInt(at.Unix(), 10)}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r result
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r, resp.StatusCode
}

func value(t *testing.T, r result) float64 {
	t.Helper()
	if r.Status != "success" || len(r.Data.Result) != 1 {
		t.Fatalf("answer %+v", r)
	}
	v, err := strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// With one sample a minute at each minute's end, rate(x[5m]) at a minute boundary t sees the
// samples at t-4m … t: the last four minutes' increase over 240 s (Prometheus extrapolates
// it to the window and divides by the window, the same figure).
func TestPromQLAgreesWithStoredPoints(t *testing.T) {
	srv, all := stored(t)
	at := t0.Add(15 * time.Minute) // samples at the ends of minutes 10..14 are in (t-5m, t]
	var calls, errs float64
	var merged metric.Stats
	for _, l := range []metric.Labels{h1, h2} {
		for i := 11; i <= 14; i++ {
			calls += all[l][i].Spans()
			errs += float64(all[l][i].Errors) / metric.Units
			merged.Merge(&all[l][i])
		}
	}
	if got, want := value(t, first(query(t, srv, `sum(rate(mercury_span_calls_total{service="api",dyed="false"}[5m]))`, at))), calls/240; math.Abs(got-want) > 1e-9 {
		t.Errorf("qps %v, want %v", got, want)
	}
	if got, want := value(t, first(query(t, srv, `sum(increase(mercury_span_errors_total[5m])) / sum(increase(mercury_span_calls_total[5m]))`, at))), errs/calls; math.Abs(got-want) > 1e-9 {
		t.Errorf("error ratio %v, want %v", got, want)
	}
	h1calls := 0.0
	for i := 11; i <= 14; i++ {
		h1calls += all[h1][i].Spans()
	}
	if got, want := value(t, first(query(t, srv, `sum by (host) (increase(mercury_span_calls_total{host="h1"}[5m]))`, at))), h1calls*300/240; math.Abs(got-want) > 1e-9 {
		t.Errorf("increase on h1 %v, want %v", got, want)
	}
	p99 := value(t, first(query(t, srv, `histogram_quantile(0.99, sum(rate(mercury_span_duration_seconds[5m])))`, at)))
	want := merged.Quantile(0.99) / 1e9
	// The sketch's error, the ns→s bucket shift, and Prometheus's interpolation inside a bucket.
	if math.Abs(p99-want)/want > 0.02 {
		t.Errorf("p99 %v s, want %v s", p99, want)
	}
}

func first(r result, _ int) result { return r }

func TestBadInputIsPrometheusBadData(t *testing.T) {
	srv, _ := stored(t)
	r, code := query(t, srv, `sum(rate(`, t0)
	if code != http.StatusBadRequest || r.Status != "error" || r.ErrorType != "bad_data" || r.Error == "" {
		t.Fatalf("%d %+v", code, r)
	}
	resp, err := http.Get(srv.URL + "/api/v1/query_range?query=up&start=10&end=5&step=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("end before start: %d", resp.StatusCode)
	}
}

func TestLabelsAndSeries(t *testing.T) {
	srv, _ := stored(t)
	var got struct {
		Status string   `json:"status"`
		Data   []string `json:"data"`
	}
	resp, err := http.Get(srv.URL + "/api/v1/label/host/values?start=" + strconv.FormatInt(t0.Unix(), 10))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got.Status != "success" || len(got.Data) != 2 || got.Data[0] != "h1" || got.Data[1] != "h2" {
		t.Fatalf("host values %+v", got)
	}
	resp, err = http.Get(srv.URL + "/api/v1/label/__name__/values?start=" + strconv.FormatInt(t0.Unix(), 10))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if len(got.Data) != 5 {
		t.Fatalf("names %+v", got)
	}
}
