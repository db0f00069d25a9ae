package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/query"
	"github.com/mercury-apm/mercury/query/agents"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/query/client"
	"github.com/mercury-apm/mercury/query/traces"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

func newTestServer(t testing.TB) (*query.Service, *tracestore.Store) {
	t.Helper()
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := tracestore.New(db, db)
	s, err := query.New(query.Config{Traces: store, AgentConfigPath: filepath.Join(t.TempDir(), "agent-config.json"), AdminToken: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	return s, store
}

// chain is api → order → payment for one order id, payment failing.
func chain(orderID string, at time.Time) []schemas.Span {
	tid := schemas.TraceID{1, byte(len(orderID)), orderID[len(orderID)-1]}
	mk := func(id, parent byte, service, op string, offset, dur time.Duration) schemas.Span {
		return schemas.Span{TraceID: tid, SpanID: schemas.SpanID{id}, ParentSpanID: schemas.SpanID{parent}, Domain: "shop",
			Service: service, Operation: op, Kind: schemas.KindServer, StartUnixNano: at.Add(offset).UnixNano(),
			DurationNano: int64(dur), Status: schemas.StatusOK, SampleRate: 1,
			BusinessKeys: []schemas.KV{{Key: "order_id", Value: orderID}}}
	}
	spans := []schemas.Span{
		mk(1, 0, "api", "POST /order", 0, 50*time.Millisecond),
		mk(2, 1, "order", "create", 5*time.Millisecond, 40*time.Millisecond),
		mk(3, 2, "payment", "charge", 10*time.Millisecond, 20*time.Millisecond),
	}
	spans[2].Status, spans[2].ErrorType = schemas.StatusError, "*payment.DeclinedError"
	return spans
}

func do(t testing.TB, s *query.Service, method, target, token string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

func TestSearchAndTrace(t *testing.T) {
	s, store := newTestServer(t)
	now := time.Now()
	for _, id := range []string{"12345", "12346"} {
		if err := store.WriteSpans(context.Background(), chain(id, now)); err != nil {
			t.Fatal(err)
		}
	}
	rec := do(t, s, "GET", "/api/v1/traces?bk=order_id:12345&lookback=1h", "", nil)
	if rec.Code != 200 {
		t.Fatalf("search: %d %s", rec.Code, rec.Body)
	}
	var res traces.SearchResult
	json.Unmarshal(rec.Body.Bytes(), &res)
	if len(res.Traces) != 1 || res.Traces[0].SpanCount != 3 || res.Traces[0].RootService != "api" || res.Traces[0].ErrorCount != 1 {
		t.Fatalf("search result: %+v", res)
	}
	rec = do(t, s, "GET", "/api/v1/traces/"+res.Traces[0].TraceID, "", nil)
	var tr traces.Trace
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || rec.Code != 200 {
		t.Fatalf("trace: %d %s", rec.Code, rec.Body)
	}
	if len(tr.Roots) != 1 || tr.Roots[0].Service != "api" || tr.Roots[0].Children[0].Service != "order" ||
		tr.Roots[0].Children[0].Children[0].Service != "payment" || tr.Roots[0].Children[0].Children[0].Status != "ERROR" {
		t.Fatalf("tree: %s", rec.Body)
	}
	var buf bytes.Buffer
	client.PrintTrace(&buf, tr)
	if !strings.Contains(buf.String(), "└─ payment charge") || !strings.Contains(buf.String(), "✗ *payment.DeclinedError") {
		t.Fatalf("printed tree:\n%s", buf.String())
	}
	rec = do(t, s, "GET", "/api/v1/traces?service=payment&errors=true", "", nil)
	json.Unmarshal(rec.Body.Bytes(), &res)
	if len(res.Traces) != 2 {
		t.Fatalf("errors by service: %s", rec.Body)
	}
	if rec := do(t, s, "GET", "/api/v1/traces/"+strings.Repeat("ab", 16), "", nil); rec.Code != 404 {
		t.Fatalf("missing trace: %d", rec.Code)
	}
}

func TestBadParameters(t *testing.T) {
	s, _ := newTestServer(t)
	for _, q := range []string{
		"", "service=a&limit=-1", "service=a&limit=100000", "service=a&limit=x", "bk=nokey", "bk=:v",
		"service=a&start=yesterday", "service=a&minDuration=-5ms", "service=a&minDuration=2s&maxDuration=1s",
		"service=a&errors=maybe", "service=a&dyed=sometimes", "service=a&lookback=-1h", "operation=x",
		"service=a&start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z", "service=a&bogus=1",
		"service=" + strings.Repeat("x", 1000), "service=%ff%fe",
		"service=a&end=3000-01-01T00:00:00Z", "service=a&start=9007199254740992", "service=a&start=-99999999999999",
	} {
		rec := do(t, s, "GET", "/api/v1/traces?"+q, "", nil)
		var e api.Error
		if rec.Code != 400 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
			t.Errorf("%q: %d %s", q, rec.Code, rec.Body)
		}
	}
	if rec := do(t, s, "GET", "/api/v1/traces/not-hex", "", nil); rec.Code != 400 {
		t.Errorf("bad id: %d", rec.Code)
	}
	// Query-language lookalikes are literal values: a valid search that finds nothing.
	rec := do(t, s, "GET", "/api/v1/traces?bk="+url.QueryEscape(`order_id:") OR 1=1 --`)+"&service="+url.QueryEscape("*:*"), "", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"traces":[]`) {
		t.Errorf("injection-looking values: %d %s", rec.Code, rec.Body)
	}
}

func FuzzSearchParams(f *testing.F) {
	s, store := newTestServer(f)
	store.WriteSpans(context.Background(), chain("12345", time.Now()))
	for _, seed := range []string{"bk=order_id:12345", "service=api&limit=5&errors=true", "bk=a:b&bk=c=d&minDuration=1ms&lookback=2h", "start=0&end=99999999999999", "%zz", "dyed=only&service=x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		req := httptest.NewRequest("GET", "/api/v1/traces", nil)
		req.URL.RawQuery = raw
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: %d %s", raw, rec.Code, rec.Body)
		}
	})
}

func TestAgentConfigEndpoint(t *testing.T) {
	s, _ := newTestServer(t)
	if rec := do(t, s, "PUT", "/api/v1/agent-config?service=order", "", []byte(`{"sample_rate":0.5}`)); rec.Code != 401 {
		t.Fatalf("no token: %d", rec.Code)
	}
	if rec := do(t, s, "PUT", "/api/v1/agent-config?service=order", "wrong", []byte(`{"sample_rate":0.5}`)); rec.Code != 401 {
		t.Fatalf("wrong token: %d", rec.Code)
	}
	for _, body := range []string{`{"sample_rate":2}`, `not json`, `{"unknown":1}`, `{"switches":{"a b":true}}`} {
		if rec := do(t, s, "PUT", "/api/v1/agent-config?service=order", "s3cret", []byte(body)); rec.Code != 400 {
			t.Fatalf("%s: %d %s", body, rec.Code, rec.Body)
		}
	}
	rec := do(t, s, "PUT", "/api/v1/agent-config?service=order", "s3cret", []byte(`{"sample_rate":0.5,"switches":{"sql":false}}`))
	if rec.Code != 200 {
		t.Fatalf("put: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, s, "GET", "/api/v1/agent-config?service=order", "", nil)
	var rc schemas.AgentConfig
	json.Unmarshal(rec.Body.Bytes(), &rc)
	etag := rec.Header().Get("ETag")
	if rec.Code != 200 || rc.SampleRate == nil || *rc.SampleRate != 0.5 || rc.Switches["sql"] || etag == "" {
		t.Fatalf("get: %d %s", rec.Code, rec.Body)
	}
	req := httptest.NewRequest("GET", "/api/v1/agent-config?service=order", nil)
	req.Header.Set("If-None-Match", etag)
	rr := httptest.NewRecorder()
	s.Handler().ServeHTTP(rr, req)
	if rr.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", rr.Code)
	}
	if rec := do(t, s, "GET", "/api/v1/agent-config?service=", "", nil); rec.Code != 400 {
		t.Fatalf("empty service: %d", rec.Code)
	}
	// The default applies to services without their own configuration.
	do(t, s, "PUT", "/api/v1/agent-config?service=*", "s3cret", []byte(`{"kill":true}`))
	rec = do(t, s, "GET", "/api/v1/agent-config?service=other", "", nil)
	json.Unmarshal(rec.Body.Bytes(), &rc)
	if rc.Kill == nil || !*rc.Kill {
		t.Fatalf("default config: %s", rec.Body)
	}
}

// The agent's poller and the endpoint speak the same protocol.
func TestAgentPollsTheEndpoint(t *testing.T) {
	s, _ := newTestServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	do(t, s, "PUT", "/api/v1/agent-config?service=order", "s3cret", []byte(`{"switches":{"http":false}}`))
	a, err := agent.New(agent.Config{Service: "order", SpoolDir: t.TempDir(), ConfigURL: srv.URL + "/api/v1/agent-config", ConfigPoll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for a.Stats().ConfigVersion != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("agent config version %q", a.Stats().ConfigVersion)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestAgentsRegistry(t *testing.T) {
	s, _ := newTestServer(t)
	now := time.Now()
	hb := func(service, host, version string, at time.Time) *schemas.Heartbeat {
		return &schemas.Heartbeat{TimeUnixNano: at.UnixNano(), Domain: "shop", Service: service, Host: host, PID: 1,
			AgentVersion: version, Stats: map[string]int64{"dropped_queue_full": 2, "dropped_disk_error": 1}}
	}
	s.Registry().Observe(hb("order", "h1", "0.1.0", now))
	s.Registry().Observe(hb("order", "h2", "0.2.0", now))
	s.Registry().Observe(hb("order", "h1", "0.0.9", now.Add(-time.Minute))) // late replay: ignored
	rec := do(t, s, "GET", "/api/v1/agents", "", nil)
	var v agents.View
	json.Unmarshal(rec.Body.Bytes(), &v)
	if len(v.Agents) != 2 || v.Versions["shop"]["0.1.0"] != 1 || v.Versions["shop"]["0.2.0"] != 1 || v.Agents[0].Dropped != 3 {
		t.Fatalf("agents: %s", rec.Body)
	}
	if rec := do(t, s, "GET", "/api/v1/agents?lookback=bad", "", nil); rec.Code != 400 {
		t.Fatalf("bad lookback: %d", rec.Code)
	}
}

func TestTreeWithOrphansAndCycles(t *testing.T) {
	tid := schemas.TraceID{9}
	sp := func(id, parent byte, start int64) schemas.Span {
		return schemas.Span{TraceID: tid, SpanID: schemas.SpanID{id}, ParentSpanID: schemas.SpanID{parent}, StartUnixNano: start, DurationNano: 10}
	}
	spans := []schemas.Span{sp(1, 0, 1), sp(2, 1, 2), sp(3, 7, 3), sp(4, 5, 4), sp(5, 4, 5), sp(2, 1, 2), sp(6, 6, 6)}
	tr := traces.BuildTree(tid, spans)
	var roots []string
	for _, r := range tr.Roots {
		roots = append(roots, r.SpanID[:2])
	}
	// 1 is the root; 3 lost its parent; 4 and 5 form a loop; 6 is its own parent.
	if got := strings.Join(roots, ","); got != "01,03,04,05,06" {
		t.Fatalf("roots %s", got)
	}
	if len(tr.Roots[0].Children) != 1 || !tr.Roots[1].Orphan {
		t.Fatalf("tree: %+v", tr.Roots)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	s, _ := newTestServer(t)
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/"} {
		if rec := do(t, s, "GET", p, "", nil); rec.Code != 200 {
			t.Errorf("%s: %d", p, rec.Code)
		}
	}
	do(t, s, "GET", "/api/v1/traces?service=x", "", nil)
	if rec := do(t, s, "GET", "/metrics", "", nil); !strings.Contains(rec.Body.String(), `mercury_query_requests_total{code="200",route="/api/v1/traces"} 1`) {
		t.Errorf("metrics:\n%s", rec.Body)
	}
}

// A span with a NaN sample rate (a broken agent) still renders; the API never answers 200 with
// half a body.
func TestHostileSpanRenders(t *testing.T) {
	s, store := newTestServer(t)
	spans := chain("424242", time.Now())
	spans[1].SampleRate = math.NaN()
	spans[2].SampleRate = math.Inf(1)
	if err := store.WriteSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	rec := do(t, s, "GET", "/api/v1/traces/"+spans[0].TraceID.String(), "", nil)
	var tr traces.Trace
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &tr) != nil || tr.SpanCount != 3 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// TestWaterfallOffsetsAreExact: offsets come as integers relative to the trace start, exact to
// the nanosecond, so a 3 ms trace draws children inside their parents.
func TestWaterfallOffsetsAreExact(t *testing.T) {
	s, store := newTestServer(t)
	at := time.Now().Truncate(time.Millisecond).Add(123456789 * time.Nanosecond % time.Millisecond)
	spans := chain("31337", at)
	spans[1].StartUnixNano = at.UnixNano() + 1_234_567 // 1.234567 ms after the root
	spans[1].DurationNano = 1_765_433
	spans[2].StartUnixNano = at.UnixNano() + 1_234_568
	spans[2].DurationNano = 1_765_432 // ends exactly with its parent
	if err := store.WriteSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	rec := do(t, s, "GET", "/api/v1/traces/"+spans[0].TraceID.String(), "", nil)
	var tr traces.Trace
	if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	order := tr.Roots[0].Children[0]
	payment := order.Children[0]
	if tr.Roots[0].OffsetNano != 0 || order.OffsetNano != 1_234_567 || payment.OffsetNano != 1_234_568 {
		t.Fatalf("offsets %d %d %d", tr.Roots[0].OffsetNano, order.OffsetNano, payment.OffsetNano)
	}
	if payment.OffsetNano+payment.DurationNano > order.OffsetNano+order.DurationNano {
		t.Fatal("child ends after its parent")
	}
}

// TestDefaultLookback: a search naming no start looks back DefaultLookback; an explicit
// lookback or start reaches further.
func TestDefaultLookback(t *testing.T) {
	s, store := newTestServer(t)
	old := time.Now().Add(-traces.DefaultLookback - time.Hour)
	if err := store.WriteSpans(context.Background(), chain("5150", old)); err != nil {
		t.Fatal(err)
	}
	count := func(target string) int {
		rec := do(t, s, "GET", target, "", nil)
		var res traces.SearchResult
		if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || rec.Code != 200 {
			t.Fatalf("%s: %d %s", target, rec.Code, rec.Body)
		}
		return len(res.Traces)
	}
	if n := count("/api/v1/traces?bk=order_id:5150"); n != 0 {
		t.Fatalf("default lookback found %d traces older than it", n)
	}
	if n := count("/api/v1/traces?bk=order_id:5150&lookback=48h"); n != 1 {
		t.Fatalf("lookback=48h found %d", n)
	}
	if n := count("/api/v1/traces?bk=order_id:5150&start=" + url.QueryEscape(old.Add(-time.Minute).Format(time.RFC3339))); n != 1 {
		t.Fatalf("explicit start found %d", n)
	}
}

// TestAgentsLiveness: an agent whose heartbeats stopped is listed but not live, and the
// versions per domain count live agents only.
func TestAgentsLiveness(t *testing.T) {
	s, _ := newTestServer(t)
	now := time.Now()
	hb := func(host string, at time.Time) *schemas.Heartbeat {
		return &schemas.Heartbeat{TimeUnixNano: at.UnixNano(), Domain: "shop", Service: "order", Host: host, PID: 1, AgentVersion: "0.1.0"}
	}
	s.Registry().Observe(hb("alive", now.Add(-2*time.Second)))
	s.Registry().Observe(hb("dead", now.Add(-5*time.Minute)))
	rec := do(t, s, "GET", "/api/v1/agents", "", nil)
	var v agents.View
	json.Unmarshal(rec.Body.Bytes(), &v)
	if len(v.Agents) != 2 || !v.Agents[0].Live || v.Agents[1].Live || v.Versions["shop"]["0.1.0"] != 1 {
		t.Fatalf("agents: %s", rec.Body)
	}
	if rec := do(t, s, "GET", "/api/v1/agents?limit=-1", "", nil); rec.Code != 400 {
		t.Fatalf("unknown parameter: %d", rec.Code)
	}
}

// TestAgentConfigLevels: an agent's configuration is the default, its domain's (after the
// group the domain names) and its service's, merged field by field; a change at any level
// changes the version an agent sees.
func TestAgentConfigLevels(t *testing.T) {
	s, _ := newTestServer(t)
	put := func(query, body string, want int) {
		t.Helper()
		if rec := do(t, s, "PUT", "/api/v1/agent-config?"+query, "s3cret", []byte(body)); rec.Code != want {
			t.Fatalf("PUT %s %s: %d %s", query, body, rec.Code, rec.Body)
		}
	}
	get := func(domain, service string) schemas.AgentConfig {
		t.Helper()
		rec := do(t, s, "GET", "/api/v1/agent-config?domain="+domain+"&service="+service, "", nil)
		var rc schemas.AgentConfig
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &rc) != nil {
			t.Fatalf("GET %s/%s: %d %s", domain, service, rec.Code, rec.Body)
		}
		return rc
	}
	put("service=*", `{"sample_rate":1}`, 200)
	put("domain=shop", `{"group":"canary"}`, 400) // no such group yet
	put("group=canary", `{"sample_rate":0.01,"switches":{"mq":false}}`, 200)
	put("domain=shop", `{"group":"canary","switches":{"sql":false}}`, 200)
	put("service=order", `{"sample_rate":0.5,"override_domain_sampling":true}`, 200)
	put("service=order&domain=shop", `{}`, 400) // two levels at once
	put("group=g2", `{"group":"canary"}`, 400)  // groups do not nest

	order, payment, other := get("shop", "order"), get("shop", "payment"), get("bank", "ledger")
	if *order.SampleRate != 0.5 || order.Switches["sql"] || order.Switches["mq"] || !*order.OverrideDomainSampling {
		t.Fatalf("order: %+v", order)
	}
	if *payment.SampleRate != 0.01 || payment.Switches["sql"] || payment.OverrideDomainSampling != nil {
		t.Fatalf("payment: %+v", payment)
	}
	if *other.SampleRate != 1 || len(other.Switches) != 0 {
		t.Fatalf("other domain: %+v", other)
	}
	before := payment.Version
	put("group=canary", `{"sample_rate":0.02}`, 200)
	if after := get("shop", "payment"); after.Version == before || *after.SampleRate != 0.02 {
		t.Fatalf("a group change did not reach the domain's agents: %+v (was version %s)", after, before)
	}
	rec := do(t, s, "GET", "/api/v1/agent-config/levels", "", nil)
	var l agents.Levels
	if json.Unmarshal(rec.Body.Bytes(), &l) != nil || len(l.Groups) != 1 || len(l.Domains) != 1 || len(l.Services) != 1 || l.Default == nil {
		t.Fatalf("levels: %s", rec.Body)
	}
}

// TestRemoteSampleRateWithinOnePoll: a running agent applies a domain's new sample rate on
// the first poll after the change.
func TestRemoteSampleRateWithinOnePoll(t *testing.T) {
	s, _ := newTestServer(t)
	var polls atomic.Int64
	h := s.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/agent-config" {
			polls.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	a, err := agent.New(agent.Config{Service: "order", Domain: "shop", SpoolDir: t.TempDir(), ConfigURL: srv.URL + "/api/v1/agent-config", ConfigPoll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	waitPolls := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for polls.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d polls, want %d", polls.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitPolls(1)
	sampled := func() bool {
		_, sp := a.StartSpan(context.Background(), "probe")
		defer sp.End()
		return sp.Sampled()
	}
	if !sampled() {
		t.Fatal("not sampled at the local rate 1")
	}
	if rec := do(t, s, "PUT", "/api/v1/agent-config?domain=shop", "s3cret", []byte(`{"sample_rate":0}`)); rec.Code != 200 {
		t.Fatalf("put: %d %s", rec.Code, rec.Body)
	}
	// The poll after the change may be in flight; the one after that started only once the
	// first had been applied.
	waitPolls(polls.Load() + 2)
	if v := a.Stats().ConfigVersion; v != "1" {
		t.Fatalf("config version %q after one poll", v)
	}
	for range 100 {
		if sampled() {
			t.Fatal("a root span was sampled at rate 0")
		}
	}
}

type alertState map[string][2]string

func (a alertState) DomainAlerts(d string) (string, string) { return a[d][0], a[d][1] }

// TestDomainRegistry: domains with their first sighting (kept across restarts), owner, live
// agents and versions, and a status from agents and alerts.
func TestDomainRegistry(t *testing.T) {
	dir := t.TempDir()
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	alerts := alertState{"bank": {"payments-strict", "warning"}, "shop": {"checkout", ""}}
	open := func() *query.Service {
		s, err := query.New(query.Config{Traces: tracestore.New(db, db), AgentConfigPath: filepath.Join(dir, "agent-config.json"), AdminToken: "s3cret", Alerts: alerts})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	now := time.Now()
	hb := func(domain, host string, at time.Time, dropped int64) *schemas.Heartbeat {
		return &schemas.Heartbeat{TimeUnixNano: at.UnixNano(), Domain: domain, Service: domain + "-svc", Host: host, PID: 1,
			AgentVersion: "0.2.0", Stats: map[string]int64{"dropped_queue_full": dropped}}
	}
	s.Registry().Observe(hb("shop", "h1", now, 0))
	s.Registry().Observe(hb("shop", "h2", now, 0))
	s.Registry().Observe(hb("bank", "h3", now, 7))
	s.Registry().Observe(hb("legacy", "h4", now.Add(-time.Hour), 0))
	if rec := do(t, s, "PUT", "/api/v1/domains/shop", "s3cret", []byte(`{"owner":"team-checkout"}`)); rec.Code != 200 {
		t.Fatalf("owner: %d %s", rec.Code, rec.Body)
	}
	domains := func(s *query.Service) map[string]agents.Domain {
		rec := do(t, s, "GET", "/api/v1/domains", "", nil)
		var v agents.Domains
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &v) != nil {
			t.Fatalf("domains: %d %s", rec.Code, rec.Body)
		}
		m := map[string]agents.Domain{}
		for _, d := range v.Domains {
			m[d.Domain] = d
		}
		return m
	}
	m := domains(s)
	if d := m["shop"]; d.Status != "normal" || d.LiveAgents != 2 || d.Versions["0.2.0"] != 2 || d.Owner != "team-checkout" || d.FirstSeen.IsZero() {
		t.Fatalf("shop: %+v", d)
	}
	if d := m["bank"]; d.Status != "warning" || d.Dropped != 7 || d.AlertStrategy != "payments-strict" {
		t.Fatalf("bank: %+v", d)
	}
	if d := m["shop"]; d.AlertStrategy != "checkout" {
		t.Fatalf("shop strategy: %+v", d)
	}
	alerts["shop"] = [2]string{"checkout", "alarm"}
	if d := domains(s)["shop"]; d.Status != "abnormal" {
		t.Fatalf("shop with an alarm firing: %+v", d)
	}
	delete(alerts, "shop")
	if d := m["legacy"]; d.Status != "abnormal" || d.GoneAgents != 1 {
		t.Fatalf("legacy: %+v", d)
	}
	first := m["shop"].FirstSeen
	s2 := open() // a restart: no agent reported yet, the registry remembers the domain
	if d := domains(s2)["shop"]; !d.FirstSeen.Equal(first) || d.Owner != "team-checkout" || d.Status != "abnormal" {
		t.Fatalf("after a restart: %+v", d)
	}
	if rec := do(t, s, "PUT", "/api/v1/domains/bad%20name", "s3cret", []byte(`{"owner":"x"}`)); rec.Code != 400 {
		t.Fatalf("bad domain: %d", rec.Code)
	}
}

// TestSearchByExceptionAndEvent: the API finds traces by exception type or event name
// without a service.
func TestSearchByExceptionAndEvent(t *testing.T) {
	s, store := newTestServer(t)
	spans := chain("8080", time.Now())
	spans[1].Events = []schemas.SpanEvent{{TimeUnixNano: spans[1].StartUnixNano, Name: "cache.miss"}}
	if err := store.WriteSpans(context.Background(), spans); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"errorType=" + url.QueryEscape("*payment.DeclinedError"), "event=cache.miss", "event=cache.miss&bk=order_id:8080"} {
		rec := do(t, s, "GET", "/api/v1/traces?"+q, "", nil)
		var res traces.SearchResult
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &res) != nil || len(res.Traces) != 1 || res.Traces[0].TraceID != spans[0].TraceID.String() {
			t.Fatalf("%s: %d %s", q, rec.Code, rec.Body)
		}
	}
	if rec := do(t, s, "GET", "/api/v1/traces?event=cache.miss&bk=order_id:1", "", nil); rec.Code != 200 || strings.Contains(rec.Body.String(), spans[0].TraceID.String()) {
		t.Fatalf("event with another order: %d %s", rec.Code, rec.Body)
	}
}
