package metrics_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/query/metrics"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

var (
	apiSrv   = metric.Labels{Domain: "shop", Service: "api", Operation: "POST /orders", Kind: schemas.KindServer, Host: "h1"}
	apiSrv2  = metric.Labels{Domain: "shop", Service: "api", Operation: "POST /orders", Kind: schemas.KindServer, Host: "h2"}
	apiCall  = metric.Labels{Domain: "shop", Service: "api", Operation: "HTTP POST", Kind: schemas.KindClient, Host: "h1"}
	orderSrv = metric.Labels{Domain: "shop", Service: "order", Operation: "POST /checkout", Kind: schemas.KindServer, Host: "h1"}
	edgeOrd  = metric.Labels{Domain: "shop", Service: "api", Kind: schemas.KindClient, Peer: "order"}
	edgeDB   = metric.Labels{Domain: "shop", Service: "order", Kind: schemas.KindClient, Peer: "orders-db"}
	apiDyed  = metric.Labels{Domain: "shop", Service: "api", Operation: "POST /orders", Kind: schemas.KindServer, Host: "h1", Dyed: true}
)

// stats of n spans of duration d (ns), errs of them failed, at sample rate 1.
func stats(n, errs int, d int64) metric.Stats {
	var s metric.Stats
	for i := range n {
		s.Add(d, metric.Units, i < errs)
	}
	return s
}

func serve(t *testing.T) (*httptest.Server, metricstore.Store) {
	t.Helper()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	mux := http.NewServeMux()
	rt, err := api.NewRouter(mux, prometheus.NewRegistry(), slog.New(slog.DiscardHandler), "")
	if err != nil {
		t.Fatal(err)
	}
	(&metrics.Room{Store: store, Now: func() time.Time { return t0.Add(10 * time.Minute) }}).Register(rt)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	var ups []metricstore.Upsert
	put := func(l metric.Labels, minute int, st metric.Stats) {
		ups = append(ups, metricstore.Upsert{Labels: l, Point: metricstore.Point{SeriesID: l.ID(), Minute: t0.Unix() + int64(60*minute), Revision: 1, Stats: st}})
	}
	// Minute 0: api fast (120 spans on h1, 60 on h2); minute 1: few but slow. Minute 2: none.
	put(apiSrv, 0, stats(120, 6, 1e6))
	put(apiSrv2, 0, stats(60, 0, 2e6))
	put(apiSrv, 1, stats(6, 3, 500e6))
	put(apiCall, 0, stats(30, 0, 9e6))
	put(orderSrv, 0, stats(30, 3, 8e6))
	put(edgeOrd, 0, stats(30, 0, 9e6))
	put(edgeDB, 0, stats(60, 6, 3e6))
	put(apiDyed, 0, stats(1000, 0, 1e6)) // a load test: shadow series only
	if err := store.Upsert(context.Background(), ups); err != nil {
		t.Fatal(err)
	}
	return srv, store
}

func get(t *testing.T, srv *httptest.Server, path string, q url.Values, into any) int {
	t.Helper()
	resp, err := http.Get(srv.URL + path + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

func values(s metrics.Series) []any {
	out := make([]any, len(s.Points))
	for i, p := range s.Points {
		if p.V == nil {
			out[i] = nil
		} else {
			out[i] = math.Round(*p.V*1e6) / 1e6
		}
	}
	return out
}

func TestSeries(t *testing.T) {
	srv, _ := serve(t)
	q := func(kv ...string) url.Values {
		v := url.Values{"service": {"api"}, "start": {t0.Format(time.RFC3339)}, "end": {t0.Add(3 * time.Minute).Format(time.RFC3339)}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	for _, c := range []struct {
		name string
		q    url.Values
		want []any
	}{
		{"qps", q(), []any{3.0, 0.1, 0.0}},
		{"count", q("metric", "count"), []any{180.0, 6.0, 0.0}},
		{"count one host", q("metric", "count", "host", "h2"), []any{60.0, 0.0, 0.0}},
		{"client kind", q("metric", "count", "kind", "client"), []any{30.0, 0.0, 0.0}},
		{"error rate", q("metric", "error_rate"), []any{6.0 / 180, 0.5, nil}},
		{"avg", q("metric", "avg"), []any{math.Round((120*1+60*2)/180.0*1e6) / 1e6, 500.0, nil}},
		{"operation", q("metric", "count", "operation", "POST /orders"), []any{180.0, 6.0, 0.0}},
		{"dyed", q("metric", "count", "dyed", "true"), []any{1000.0, 0.0, 0.0}},
		{"other operation", q("metric", "count", "operation", "GET /"), []any{0.0, 0.0, 0.0}},
	} {
		var s metrics.Series
		if code := get(t, srv, "/api/v1/metrics", c.q, &s); code != 200 {
			t.Fatalf("%s: status %d", c.name, code)
		}
		got := values(s)
		for i := range c.want {
			if w, ok := c.want[i].(float64); ok && got[i] != nil {
				if math.Abs(got[i].(float64)-w) > 1e-6 {
					t.Errorf("%s: point %d = %v, want %v", c.name, i, got[i], w)
				}
			} else if got[i] != c.want[i] {
				t.Errorf("%s: point %d = %v, want %v", c.name, i, got[i], c.want[i])
			}
		}
	}
}

// A 5-minute p99 is the p99 of the five minutes' spans, from merged sketches: 186 spans of
// which 6 are slow put the p99 among the slow ones (500 ms), while the average of the two
// minutes' p99s would be about 250 ms.
func TestCoarseStepMergesSketches(t *testing.T) {
	srv, store := serve(t)
	var s metrics.Series
	code := get(t, srv, "/api/v1/metrics", url.Values{"service": {"api"}, "metric": {"p99"}, "step": {"5m"},
		"start": {t0.Format(time.RFC3339)}, "end": {t0.Add(5 * time.Minute).Format(time.RFC3339)}}, &s)
	if code != 200 || len(s.Points) != 1 || s.Series != 2 {
		t.Fatalf("status %d, %d points, %d series", code, len(s.Points), s.Series)
	}
	var all metric.Stats
	for _, l := range []metric.Labels{apiSrv, apiSrv2} {
		if err := store.Range(context.Background(), l.ID(), t0, t0.Add(5*time.Minute), func(p *metricstore.Point) error { all.Merge(&p.Stats); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if want := all.Quantile(0.99) / 1e6; math.Abs(*s.Points[0].V-want) > 1e-9 || *s.Points[0].V < 400 {
		t.Fatalf("5m p99 %v ms, want %v ms (the merged sketch's)", *s.Points[0].V, want)
	}
}

func TestBadParameters(t *testing.T) {
	srv, _ := serve(t)
	for name, c := range map[string]struct {
		path string
		q    url.Values
		msg  string
	}{
		"no service":   {"/api/v1/metrics", url.Values{}, "service is required"},
		"metric":       {"/api/v1/metrics", url.Values{"service": {"a"}, "metric": {"p95"}}, `metric "p95"`},
		"step":         {"/api/v1/metrics", url.Values{"service": {"a"}, "step": {"10s"}}, `step "10s"`},
		"kind":         {"/api/v1/metrics", url.Values{"service": {"a"}, "kind": {"DB"}}, `kind "DB"`},
		"start":        {"/api/v1/metrics", url.Values{"service": {"a"}, "start": {"yesterday"}}, "start"},
		"order":        {"/api/v1/metrics", url.Values{"service": {"a"}, "start": {"2000"}, "end": {"1000"}}, "is not before end"},
		"too many":     {"/api/v1/metrics", url.Values{"service": {"a"}, "start": {"0"}, "end": {t0.Format(time.RFC3339)}}, "at most 11000"},
		"unknown":      {"/api/v1/metrics", url.Values{"service": {"a"}, "svc": {"a"}}, `unknown parameter "svc"`},
		"dyed":         {"/api/v1/topology", url.Values{"dyed": {"maybe"}}, `dyed "maybe"`},
		"topology end": {"/api/v1/topology", url.Values{"end": {"x"}}, "end"},
		"services":     {"/api/v1/services", url.Values{"service": {"a"}}, `unknown parameter "service"`},
	} {
		var e api.Error
		if code := get(t, srv, c.path, c.q, &e); code != http.StatusBadRequest || !strings.Contains(e.Error, c.msg) {
			t.Errorf("%s: status %d %q, want 400 mentioning %q", name, code, e.Error, c.msg)
		}
	}
}

func TestTopologyAndServices(t *testing.T) {
	srv, _ := serve(t)
	w := url.Values{"start": {t0.Format(time.RFC3339)}, "end": {t0.Add(2 * time.Minute).Format(time.RFC3339)}}
	var topo metrics.Topology
	if code := get(t, srv, "/api/v1/topology", w, &topo); code != 200 {
		t.Fatalf("status %d", code)
	}
	nodes := map[string]metrics.Node{}
	for _, n := range topo.Nodes {
		nodes[n.ID] = n
	}
	if len(nodes) != 3 || nodes["orders-db"].Virtual != true || nodes["order"].Virtual || nodes["api"].Virtual {
		t.Fatalf("nodes %+v", topo.Nodes)
	}
	// api: 186 server spans over 2 minutes; orders-db: its callers' 60 calls, 10 % failing.
	if q := nodes["api"].QPS; math.Abs(q-186.0/120) > 1e-9 {
		t.Errorf("api qps %v", q)
	}
	if db := nodes["orders-db"]; math.Abs(db.QPS-0.5) > 1e-9 || math.Abs(db.ErrorRate-0.1) > 1e-9 || db.P99Millis == nil {
		t.Errorf("orders-db %+v", db)
	}
	if len(topo.Edges) != 2 || topo.Edges[0].Source != "api" || topo.Edges[0].Target != "order" || topo.Edges[1].Target != "orders-db" {
		t.Fatalf("edges %+v", topo.Edges)
	}
	if p := topo.Edges[0].P99Millis; p == nil || math.Abs(*p-9)/9 > 0.006 {
		t.Errorf("api → order p99 %v, want 9 ms within the sketch's error", p)
	}
	var svcs metrics.Services
	if code := get(t, srv, "/api/v1/services", w, &svcs); code != 200 {
		t.Fatalf("status %d", code)
	}
	if len(svcs.Services) != 2 || svcs.Services[0].Name != "api" ||
		strings.Join(svcs.Services[0].Operations, ",") != "HTTP POST,POST /orders" || svcs.Services[1].Operations[0] != "POST /checkout" {
		t.Fatalf("services %+v", svcs)
	}
	var empty metrics.Topology
	if code := get(t, srv, "/api/v1/topology", url.Values{"start": {"0"}, "end": {"60000"}}, &empty); code != 200 || len(empty.Nodes) != 0 || empty.Nodes == nil {
		t.Fatalf("empty window: %d %+v", code, empty)
	}
}
