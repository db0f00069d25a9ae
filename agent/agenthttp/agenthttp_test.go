package agenthttp_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/agenthttp"
	"github.com/mercury-apm/mercury/agent/internal/agenttest"
	"github.com/mercury-apm/mercury/schemas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func byOp(t *testing.T, spans []schemas.Span, op string) schemas.Span {
	t.Helper()
	for _, s := range spans {
		if s.Operation == op {
			return s
		}
	}
	t.Fatalf("no span %q in %d spans: %v", op, len(spans), ops(spans))
	return schemas.Span{}
}

func ops(spans []schemas.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Operation)
	}
	return out
}

func tag(s schemas.Span, k string) string {
	v, _ := schemas.Get(s.Tags, k)
	return v
}

// twoServices runs service A (order) calling service B (stock) through the Transport, both
// behind the middleware on 127.0.0.1, and returns A's URL and a client for it.
type twoServices struct {
	a, b   *agent.Agent
	urlA   string
	client *http.Client
}

func startTwoServices(t *testing.T, cfgA, cfgB agent.Config) *twoServices {
	t.Helper()
	cfgA.Service, cfgB.Service = "order", "stock"
	ts := &twoServices{a: agenttest.New(t, cfgA), b: agenttest.New(t, cfgB)}
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)

	muxB := http.NewServeMux()
	muxB.HandleFunc("GET /stock/{sku}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "7")
	})
	srvB := httptest.NewServer(agenthttp.Middleware(ts.b, muxB))
	t.Cleanup(srvB.Close)

	toB := &http.Client{Transport: agenthttp.Transport(ts.a, base, agenthttp.WithPeerName("stock"))}
	muxA := http.NewServeMux()
	muxA.HandleFunc("GET /order/{id}", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, srvB.URL+"/stock/sku-"+r.PathValue("id"), nil)
		resp, err := toB.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	})
	srvA := httptest.NewServer(agenthttp.Middleware(ts.a, muxA,
		agenthttp.WithBusinessKeys(map[string]string{"order_id": "query:order_id", "user_id": "header:X-User-Id"})))
	t.Cleanup(srvA.Close)
	ts.urlA, ts.client = srvA.URL, &http.Client{Transport: base}
	return ts
}

func (ts *twoServices) get(t *testing.T, path string, header map[string]string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.urlA+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
	}
	return string(body)
}

func TestPropagationAcrossServices(t *testing.T) {
	ts := startTwoServices(t, agent.Config{}, agent.Config{})
	if body := ts.get(t, "/order/42?order_id=42", map[string]string{"X-User-Id": "u-7"}); body != "7" {
		t.Fatalf("body %q", body)
	}
	spansA, _ := agenttest.Records(t, ts.a)
	spansB, _ := agenttest.Records(t, ts.b)
	if len(spansA) != 2 || len(spansB) != 1 {
		t.Fatalf("A wrote %v, B wrote %v", ops(spansA), ops(spansB))
	}
	server, client := byOp(t, spansA, "GET /order/{id}"), byOp(t, spansA, "HTTP GET")
	remote := byOp(t, spansB, "GET /stock/{sku}")
	if !server.ParentSpanID.IsZero() || server.Kind != schemas.KindServer {
		t.Fatalf("A's server span is not a root server span: %+v", server)
	}
	if client.TraceID != server.TraceID || client.ParentSpanID != server.SpanID || client.Kind != schemas.KindClient {
		t.Fatalf("A's client span is not the server's child: %+v", client)
	}
	if remote.TraceID != server.TraceID || remote.ParentSpanID != client.SpanID {
		t.Fatalf("B's span does not continue A's call: %+v", remote)
	}
	if client.Peer != "stock" || tag(client, "http.status_code") != "200" || client.Status != schemas.StatusOK {
		t.Fatalf("client span: %+v", client)
	}
	if tag(server, "http.method") != "GET" || tag(server, "http.status_code") != "200" || server.Status != schemas.StatusOK {
		t.Fatalf("server span tags: %+v", server)
	}
	if v, _ := schemas.Get(server.BusinessKeys, "order_id"); v != "42" {
		t.Fatalf("order_id: %+v", server.BusinessKeys)
	}
	if v, _ := schemas.Get(server.BusinessKeys, "user_id"); v != "u-7" {
		t.Fatalf("user_id: %+v", server.BusinessKeys)
	}
	if server.Dyed || remote.Dyed {
		t.Fatal("undyed traffic marked dyed")
	}
}

func TestUnsampledRootRecordsNothingDownstream(t *testing.T) {
	ts := startTwoServices(t, agent.Config{SampleRate: 1e-9}, agent.Config{})
	for i := 0; i < 20; i++ {
		ts.get(t, "/order/1", nil)
	}
	spansA, _ := agenttest.Records(t, ts.a)
	spansB, _ := agenttest.Records(t, ts.b)
	if len(spansA) != 0 || len(spansB) != 0 {
		t.Fatalf("unsampled traces recorded: A %v, B %v", ops(spansA), ops(spansB))
	}
}

func TestDyeTravelsDownstream(t *testing.T) {
	ts := startTwoServices(t, agent.Config{}, agent.Config{})
	ts.get(t, "/order/1", map[string]string{agent.HeaderDye: "1"})
	ts.get(t, "/order/2", map[string]string{agent.HeaderDye: "yes"}) // only "1" dyes
	spansA, _ := agenttest.Records(t, ts.a)
	spansB, _ := agenttest.Records(t, ts.b)
	dyed := 0
	for _, s := range append(spansA, spansB...) {
		if s.Dyed {
			dyed++
		}
	}
	if dyed != 3 || !spansB[0].Dyed || spansB[1].Dyed {
		t.Fatalf("%d dyed spans, want 3 (A server, A client, B server of the first request)", dyed)
	}
}

func TestIncomingContext(t *testing.T) {
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	cases := []struct {
		name, traceparent, tracestate string
		continued, recorded, dyed     bool
	}{
		{"sampled parent", "00-" + traceID + "-" + parentID + "-01", "", true, true, false},
		{"unsampled parent", "00-" + traceID + "-" + parentID + "-00", "", true, false, false},
		{"dyed parent", "00-" + traceID + "-" + parentID + "-01", "mercury=r:1;d:1", true, true, true},
		{"uppercase", "00-" + strings.ToUpper(traceID) + "-" + parentID + "-01", "", false, true, false},
		{"truncated", "00-" + traceID + "-" + parentID, "", false, true, false},
		{"zero trace id", "00-00000000000000000000000000000000-" + parentID + "-01", "", false, true, false},
		{"garbage", "\x00\xff not a header", "mercury=d:1", false, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := agenttest.New(t, agent.Config{})
			mux := http.NewServeMux()
			mux.HandleFunc("POST /pay", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
			req := httptest.NewRequest(http.MethodPost, "/pay", nil)
			req.Header.Set("traceparent", c.traceparent)
			req.Header.Set("tracestate", c.tracestate)
			rec := httptest.NewRecorder()
			agenthttp.Middleware(a, mux).ServeHTTP(rec, req)
			if rec.Code != http.StatusCreated {
				t.Fatalf("request failed: %d", rec.Code)
			}
			spans, _ := agenttest.Records(t, a)
			if !c.recorded {
				if len(spans) != 0 {
					t.Fatalf("recorded %v", ops(spans))
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			s := spans[0]
			continued := s.TraceID.String() == traceID && s.ParentSpanID.String() == parentID
			if continued != c.continued || (!c.continued && !s.ParentSpanID.IsZero()) {
				t.Fatalf("continued=%v want %v: %+v", continued, c.continued, s)
			}
			if s.Dyed != c.dyed || s.Operation != "POST /pay" || tag(s, "http.status_code") != "201" {
				t.Fatalf("span: %+v", s)
			}
		})
	}
}

func TestOperationNames(t *testing.T) {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) {}
	mux.HandleFunc("GET /order/{id}", ok)
	mux.HandleFunc("/health", ok)
	cases := []struct {
		method, path string
		opts         []agenthttp.Option
		want         string
	}{
		{"GET", "/order/12345", nil, "GET /order/{id}"},
		{"HEAD", "/order/12345", nil, "GET /order/{id}"}, // the pattern that matched
		{"POST", "/health", nil, "POST /health"},
		{"GET", "/no/such/path/12345", nil, "HTTP GET"},
		{"BREW", "/no/such/path", nil, "HTTP _OTHER"},
		{"GET", "/order/1", []agenthttp.Option{agenthttp.WithRouteFunc(func(*http.Request) string { return "custom" })}, "custom"},
		{"GET", "/order/1", []agenthttp.Option{agenthttp.WithRouteFunc(func(*http.Request) string { return "" })}, "GET /order/{id}"},
	}
	for _, c := range cases {
		a := agenttest.New(t, agent.Config{})
		agenthttp.Middleware(a, mux, c.opts...).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.path, nil))
		spans, _ := agenttest.Records(t, a)
		if len(spans) != 1 || spans[0].Operation != c.want {
			t.Errorf("%s %s: %v, want %q", c.method, c.path, ops(spans), c.want)
		}
	}
}

func TestServerErrorsAndPanics(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	mux := http.NewServeMux()
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "db down", http.StatusServiceUnavailable) })
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("nil map") })
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	h := agenthttp.Middleware(a, mux)
	serve := func(path string) (recovered any) {
		defer func() { recovered = recover() }() // the host's own recovery
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
		return nil
	}
	for _, p := range []string{"/fail", "/missing"} {
		if v := serve(p); v != nil {
			t.Fatalf("%s panicked: %v", p, v)
		}
	}
	if v := serve("/panic"); v != "nil map" {
		t.Fatalf("the panic did not reach the host: %v", v)
	}
	if v := serve("/abort"); v != http.ErrAbortHandler {
		t.Fatalf("ErrAbortHandler not re-panicked: %v", v)
	}
	spans, events := agenttest.Records(t, a)
	want := map[string]struct {
		st   schemas.Status
		code string
	}{
		"GET /fail": {schemas.StatusError, "503"}, "GET /missing": {schemas.StatusOK, "404"},
		"GET /panic": {schemas.StatusError, "500"}, "GET /abort": {schemas.StatusError, "500"},
	}
	for op, w := range want {
		s := byOp(t, spans, op)
		if s.Status != w.st || tag(s, "http.status_code") != w.code {
			t.Errorf("%s: status %v code %q, want %v %q", op, s.Status, tag(s, "http.status_code"), w.st, w.code)
		}
	}
	if p := byOp(t, spans, "GET /panic"); p.ErrorType != "agenthttp.panicError" {
		t.Errorf("panic error type %q", p.ErrorType)
	}
	if len(events) != 1 || events[0].Message != "panic: nil map" || !strings.Contains(events[0].Stack, "agenthttp_test") {
		t.Fatalf("exception events: %+v", events)
	}
}

func TestBusinessKeyValidation(t *testing.T) {
	for _, spec := range []map[string]string{
		{"": "query:a"}, {"order id": "query:a"}, {strings.Repeat("k", 65): "query:a"},
		{"k": "cookie:a"}, {"k": "query:"}, {"k": "header"}, {"k": "header:X Bad"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%v accepted", spec)
				}
			}()
			agenthttp.Middleware(nil, http.NotFoundHandler(), agenthttp.WithBusinessKeys(spec))
		}()
	}
	a := agenttest.New(t, agent.Config{})
	h := agenthttp.Middleware(a, http.NotFoundHandler(), agenthttp.WithBusinessKeys(map[string]string{
		"long": "query:long", "ctl": "header:X-Ctl", "ok": "query:ok", "absent": "query:absent", "utf8": "header:X-Utf8",
		"enc": "query:enc",
	}))
	req := httptest.NewRequest("GET", "/?ok=+A-1+&long="+strings.Repeat("9", 129)+"&bad=%zz&%65nc=%41%2FB", nil)
	req.Header.Set("X-Ctl", "a\x01b")
	req.Header.Set("X-Utf8", "\xff\xfe")
	h.ServeHTTP(httptest.NewRecorder(), req)
	spans, _ := agenttest.Records(t, a)
	keys := spans[0].BusinessKeys
	ok, _ := schemas.Get(keys, "ok")
	enc, _ := schemas.Get(keys, "enc")
	if len(spans) != 1 || len(keys) != 2 || ok != "A-1" || enc != "A/B" {
		t.Fatalf("business keys: %+v", keys)
	}
}

func TestResponseWriterKeepsCapabilities(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	var hijacker, flusher bool
	h := agenthttp.Middleware(a, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, hijacker = w.(http.Hijacker)
		_, flusher = w.(http.Flusher)
		if r.URL.Path == "/hijack" {
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
			c.Close()
			return
		}
		w.(http.Flusher).Flush()
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if hijacker || !flusher {
		t.Fatalf("recorder: hijacker %v (want false), flusher %v (want true)", hijacker, flusher)
	}
	// httptest.Server.Close does not wait for handlers of hijacked connections: wait for the
	// middleware to return (and end its span) before reading the spool.
	hijackDone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.URL.Path == "/hijack" {
			close(hijackDone)
		}
	}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	resp, err := (&http.Client{Transport: base}).Get(srv.URL + "/hijack")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !hijacker || string(body) != "hi" {
		t.Fatalf("HTTP/1 server: hijacker %v, body %q", hijacker, body)
	}
	<-hijackDone
	srv.Close()
	spans, _ := agenttest.Records(t, a)
	hij := spans[len(spans)-1]
	if _, ok := schemas.Get(hij.Tags, "http.status_code"); ok || hij.Status != schemas.StatusUnset {
		t.Fatalf("hijacked span claims a status: %+v", hij)
	}
}

type failingRT struct{ err error }

func (f failingRT) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

type statusRT int

func (s statusRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("traceparent") == "" {
		return nil, errors.New("no traceparent injected")
	}
	return &http.Response{StatusCode: int(s), Body: http.NoBody, Request: r}, nil
}

func TestTransport(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	ctx, parent := a.StartSpan(context.Background(), "job")
	refused := errors.New("connection refused")
	cases := []struct {
		rt   http.RoundTripper
		opts []agenthttp.Option
		err  error
	}{
		{failingRT{refused}, nil, refused},
		{statusRT(404), []agenthttp.Option{agenthttp.WithRouteFunc(func(*http.Request) string { return "GET /user/{id}" })}, nil},
		{statusRT(204), []agenthttp.Option{agenthttp.WithPeerName("user")}, nil},
	}
	for _, c := range cases {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://user.internal:8080/user/9", nil)
		resp, err := agenthttp.Transport(a, c.rt, c.opts...).RoundTrip(req)
		if !errors.Is(err, c.err) {
			t.Fatalf("err %v, want %v", err, c.err)
		}
		if resp != nil {
			resp.Body.Close()
		}
		if len(req.Header) != 0 {
			t.Fatalf("the caller's request was modified: %v", req.Header)
		}
	}
	// Without an agent the trace still passes through.
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://user.internal/", nil)
	if _, err := agenthttp.Transport(nil, statusRT(200)).RoundTrip(req); err != nil {
		t.Fatalf("nil agent: %v", err)
	}
	parent.End()
	spans, events := agenttest.Records(t, a)
	if len(spans) != 4 {
		t.Fatalf("spans %v", ops(spans))
	}
	failed, notFound, ok := spans[0], spans[1], spans[2]
	for _, s := range spans[:3] {
		if s.ParentSpanID != spans[3].SpanID || s.Kind != schemas.KindClient {
			t.Fatalf("client span not a child of the job: %+v", s)
		}
	}
	if failed.Status != schemas.StatusError || failed.Peer != "user.internal:8080" || len(events) != 1 {
		t.Fatalf("failed call: %+v, events %d", failed, len(events))
	}
	if notFound.Operation != "GET /user/{id}" || notFound.Status != schemas.StatusError || notFound.StatusCode != 404 {
		t.Fatalf("404: %+v", notFound)
	}
	if ok.Operation != "HTTP GET" || ok.Peer != "user" || ok.Status != schemas.StatusOK || tag(ok, "http.status_code") != "204" {
		t.Fatalf("204: %+v", ok)
	}
}

func TestHeaderCarrierMatchesNetHTTP(t *testing.T) {
	sc := agent.SpanContext{TraceID: schemas.TraceID{1}, SpanID: schemas.SpanID{2}, Sampled: true, SampleRate: 1, Dyed: true}
	var got http.Header
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r.Header
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	req, _ := http.NewRequestWithContext(agent.ContextWithRemote(context.Background(), sc), "GET", "http://x/", nil)
	if _, err := agenthttp.Transport(nil, rt).RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	// What the transport wrote must read back through net/http's own canonical lookups.
	back, ok := agent.Extract(got)
	if !ok || back.TraceID != sc.TraceID || back.SpanID != sc.SpanID || !back.Dyed {
		t.Fatalf("headers %v extract to %+v", got, back)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The caller's remaining budget becomes the handler's context deadline; without the header
// (or with a malformed one) the context has none.
func TestBudgetHeaderSetsDeadline(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	var left time.Duration
	var has bool
	h := agenthttp.Middleware(a, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var d time.Time
		d, has = r.Context().Deadline()
		left = time.Until(d)
	}))
	for _, c := range []struct {
		header string
		want   bool
	}{{"250", true}, {"", false}, {"later", false}} {
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		if c.header != "" {
			req.Header.Set("X-Mercury-Budget-Ms", c.header)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		if has != c.want || (has && (left > 250*time.Millisecond || left < 200*time.Millisecond)) {
			t.Errorf("header %q: deadline %v, %v left", c.header, has, left)
		}
	}
}
