package gateway

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

// spoolRecords closes a and reads back what it wrote.
func spoolRecords(t *testing.T, a *agent.Agent) (spans []schemas.Span, events []schemas.Event) {
	t.Helper()
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	scan := func(stream string, decode func(fp uint64, b []byte) error) {
		res, err := spool.Scan(a.SpoolDir(), stream, func(s *schemas.Schema, b []byte) error { return decode(s.Fingerprint, b) })
		if err != nil || res != (spool.ScanResult{}) {
			t.Fatalf("scan %s: %+v, %v", stream, res, err)
		}
	}
	scan(spool.StreamSpans, func(fp uint64, b []byte) error {
		var s schemas.Span
		_, err := schemas.DecodeBinary(fp, b, &s)
		spans = append(spans, s)
		return err
	})
	scan(spool.StreamEvents, func(fp uint64, b []byte) error {
		var e schemas.Event
		_, err := schemas.DecodeBinary(fp, b, &e)
		events = append(events, e)
		return err
	})
	return spans, events
}

func newTestAgent(t *testing.T) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Config{Service: "gateway", SpoolDir: t.TempDir(), HeartbeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	return a
}

func tag(s schemas.Span, k string) string {
	for _, kv := range s.Tags {
		if kv.Key == k {
			return kv.Value
		}
	}
	return ""
}

func attr(e schemas.Event, k string) string {
	for _, kv := range e.Attributes {
		if kv.Key == k {
			return kv.Value
		}
	}
	return ""
}

// wire is what an upstream saw of the trace context.
type wire struct{ traceparent, tracestate string }

// TestAgentObserverEndToEnd runs a real gateway on 127.0.0.1 in front of real
// upstreams, with an agent writing to a temporary spool, and reads the spool
// back.
func TestAgentObserverEndToEnd(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]wire{} // by path
	record := func(r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = wire{r.Header.Get("traceparent"), r.Header.Get("tracestate")}
		mu.Unlock()
	}
	good := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) { record(r); io.WriteString(w, "ok") })
	bad := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) { record(r); w.WriteHeader(500) })
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := "http://" + closed.Addr().String()
	closed.Close() // connections are refused: an upstream error

	a := newTestAgent(t)
	g, _ := newGateway(t, Config{Region: "sz", Observer: NewAgentObserver(a), Routes: []RouteConfig{
		{Name: "songs", Prefix: "/song/", Service: "song-svc", Tier: 1,
			Local: UpstreamConfig{Instances: []string{good.URL}}},
		{Name: "quota", Prefix: "/quota/", Service: "quota-svc", Tier: 3, Middlewares: []string{MWRateLimit},
			Local: UpstreamConfig{Instances: []string{good.URL}}, RateLimit: &RateLimitConfig{Limit: 1, Window: time.Hour}},
		{Name: "broken", Prefix: "/broken/", Service: "broken-svc", Tier: 2, Middlewares: []string{MWBreaker},
			Local:   UpstreamConfig{Instances: []string{bad.URL}},
			Breaker: BreakerConfig{Kind: "classic", MaxFailures: 1, OpenFor: time.Hour}},
		{Name: "failover", Prefix: "/fo/", Service: "fo-svc", Tier: 2,
			Local: UpstreamConfig{Instances: []string{bad.URL}}, Remote: &UpstreamConfig{Instances: []string{good.URL}}},
		{Name: "down", Prefix: "/down/", Service: "down-svc", Tier: 4, Middlewares: []string{MWTier},
			Local: UpstreamConfig{Instances: []string{deadAddr}}},
	}})
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()

	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentID = "00f067aa0ba902b7"
	)
	get := func(path string, hdr ...string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		path string
		hdr  []string
		want int
	}{
		{"/song/continued", []string{"traceparent", "00-" + traceID + "-" + parentID + "-01", "tracestate", "mercury=r:1;o:shop,other=x"}, 200},
		{"/song/dyed", []string{DyeHeader, "1"}, 200},
		{"/song/malformed", []string{"traceparent", "00-zz-nonsense-01"}, 200},
		{"/quota/1", nil, 200},
		{"/quota/2", nil, 429},
		{"/broken/1", nil, 500},
		{"/fo/1", nil, 200},
		{"/down/1", nil, 502},
	} {
		if got := get(c.path, c.hdr...); got != c.want {
			t.Fatalf("GET %s: %d, want %d", c.path, got, c.want)
		}
	}
	srv.Close() // waits for the handlers, so every span has ended
	spans, events := spoolRecords(t, a)

	byTag := map[string]schemas.Span{} // by the upstream path the span served
	for _, s := range spans {
		if s.Kind != schemas.KindServer || s.Service != "gateway" {
			t.Fatalf("span %+v: want a server span of service gateway", s)
		}
		byTag[s.Operation+" "+tag(s, TagStatusCode)+" "+tag(s, TagShedBy)+" "+tag(s, TagRegion)] = s
	}
	if len(spans) != 8 {
		t.Fatalf("%d spans, want one per request: %v", len(spans), byTag)
	}

	// Continued: same trace, the caller's span as parent, and the upstream
	// sees the gateway span as its parent.
	mu.Lock()
	defer mu.Unlock()
	var cont schemas.Span
	for _, s := range spans {
		if s.TraceID.String() == traceID {
			cont = s
		}
	}
	if cont.Operation != "songs" || cont.ParentSpanID.String() != parentID || cont.Status != schemas.StatusOK {
		t.Fatalf("continued span %+v", cont)
	}
	if w := seen["/song/continued"]; w.traceparent != "00-"+traceID+"-"+cont.SpanID.String()+"-01" ||
		!strings.HasPrefix(w.tracestate, "mercury=r:1;o:shop") || !strings.HasSuffix(w.tracestate, ",other=x") {
		t.Fatalf("upstream saw %+v, gateway span %s", w, cont.SpanID)
	}
	want := map[string]string{TagTier: "1", TagRegion: "local", TagRetried: "false", TagFailedOver: "false",
		TagDegraded: "false", TagMethod: "GET", TagStatusCode: "200", TagShedBy: ""}
	for k, v := range want {
		if got := tag(cont, k); got != v {
			t.Errorf("continued span tag %s = %q, want %q", k, got, v)
		}
	}

	// Dyed: a dyed root, and the mark travels on to the upstream.
	var dyed, fresh int
	for _, s := range spans {
		if s.Operation == "songs" && s.ParentSpanID.IsZero() {
			fresh++
			if s.Dyed {
				dyed++
			}
		}
	}
	if fresh != 2 || dyed != 1 {
		t.Fatalf("songs roots: %d, dyed %d; want 2 roots (dyed, malformed header), 1 dyed", fresh, dyed)
	}
	if w := seen["/song/dyed"]; !strings.Contains(w.tracestate, "d:1") {
		t.Fatalf("dyed request's upstream tracestate %q", w.tracestate)
	}
	if w := seen["/song/malformed"]; strings.Contains(w.traceparent, "nonsense") || len(w.traceparent) != 55 {
		t.Fatalf("malformed header reached the upstream as %q", w.traceparent)
	}

	// Shed by the rate limiter: the span says so.
	shed, ok := byTag["quota 429 ratelimit "]
	if !ok || shed.Status != schemas.StatusOK || tag(shed, TagTier) != "3" {
		t.Fatalf("shed span %+v (have %v)", shed, slices.Sorted(maps.Keys(byTag)))
	}
	// An upstream 5xx is an error span; the failover span says where it went.
	if s := byTag["broken 500  local"]; s.Status != schemas.StatusError || s.StatusCode != 500 {
		t.Fatalf("broken span %+v", s)
	}
	if s := byTag["failover 200  remote"]; tag(s, TagRetried) != "true" || tag(s, TagFailedOver) != "true" {
		t.Fatalf("failover span %+v", s)
	}
	down := byTag["down 502  local"]
	if down.Status != schemas.StatusError || down.ErrorType == "" {
		t.Fatalf("upstream error span %+v", down)
	}

	// Events: the breaker transition, the limiter episode and the upstream
	// error's exception, each an agent Event.
	got := map[string]schemas.Event{}
	for _, e := range events {
		got[e.Type+" "+e.Name] = e
	}
	if e, ok := got[schemas.EventBreaker+" broken"]; !ok || attr(e, "from") != "closed" || attr(e, "to") != "open" ||
		attr(e, "service") != "broken-svc" || attr(e, "region") != "sz" || e.Operation != "broken" {
		t.Fatalf("breaker event %+v (events %v)", e, slices.Sorted(maps.Keys(got)))
	}
	if e, ok := got[schemas.EventLimiter+" quota"]; !ok || attr(e, "limiter") != "ratelimit" || attr(e, "shedding") != "true" {
		t.Fatalf("limiter event %+v (events %v)", e, slices.Sorted(maps.Keys(got)))
	}
	var exc bool
	for _, e := range events {
		if e.Type == schemas.EventException && e.TraceID == down.TraceID && e.SpanID == down.SpanID {
			exc = true
		}
	}
	if !exc {
		t.Fatalf("no exception event for the upstream error (events %v)", slices.Sorted(maps.Keys(got)))
	}
}

// Every transition kind becomes an agent Event of the matching type; a panic
// is an exception with the stack.
func TestAgentObserverEvents(t *testing.T) {
	a := newTestAgent(t)
	o := NewAgentObserver(a)
	route := RouteInfo{Name: "songs", Service: "song-svc", Tier: 1, Region: "sz"}
	o.Event(EventBreaker, route, slog.String("from", "closed"), slog.String("to", "open"))
	o.Event(EventLimiter, route, slog.String("limiter", "bbr"), slog.Bool("shedding", true))
	o.Event(EventDegrade, route, slog.Bool("on", true), slog.String("reason", "auto"))
	o.Event(EventRetryWindow, route, slog.Int64("from", 1), slog.Int64("to", 2))
	o.Event(EventUpstreamHealth, route, slog.String("instance", "http://10.0.0.1"), slog.Bool("healthy", false))
	o.Event(EventPanic, route, slog.String("value", "boom"))
	_, events := spoolRecords(t, a)
	want := []struct{ typ, name, msg string }{
		{schemas.EventBreaker, "songs", "breaker_state from=closed to=open"},
		{schemas.EventLimiter, "songs", "limiter limiter=bbr shedding=true"},
		{schemas.EventDegrade, "songs", "degrade on=true reason=auto"},
		{schemas.EventRetryWindow, "songs", "retry_window from=1 to=2"},
		{schemas.EventUpstreamHealth, "songs", "upstream_health instance=http://10.0.0.1 healthy=false"},
		{schemas.EventException, "panic", "boom"},
	}
	if len(events) != len(want) {
		t.Fatalf("%d events, want %d", len(events), len(want))
	}
	for i, w := range want {
		e := events[i]
		if e.Type != w.typ || e.Name != w.name || e.Message != w.msg || e.Operation != "songs" ||
			e.Service != "gateway" || attr(e, "tier") != "1" {
			t.Errorf("event %d: %+v, want %+v", i, e, w)
		}
	}
	if !strings.Contains(events[5].Stack, "TestAgentObserverEvents") {
		t.Errorf("panic stack %q", events[5].Stack)
	}
}

// Without an agent (or with tracing switched off) the gateway still serves
// and passes the caller's trace context through unchanged.
func TestAgentObserverUntraced(t *testing.T) {
	var got atomic.Value
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) { got.Store(r.Header.Get("traceparent")) })
	g, _ := newGateway(t, Config{Observer: NewAgentObserver(nil), Routes: []RouteConfig{
		{Name: "songs", Prefix: "/", Service: "s", Tier: 1, Local: UpstreamConfig{Instances: []string{up.URL}}}}})
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if code, _ := do(g.Handler(), "GET", "/x", nil, "traceparent", tp); code != 200 || got.Load() != tp {
		t.Fatalf("status %d, upstream traceparent %q", code, got.Load())
	}
}
