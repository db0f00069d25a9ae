// Package interop runs Mercury next to other tracers over real HTTP on loopback.
package interop

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/agenthttp"
	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

// What an edge sends: a sampled trace, dyed, recorded at rate 0.25, with a member OTel Go
// refuses (uppercase key) and a second tracestate line.
const (
	edgeTrace  = "5bf92f3577b34da6a3ce929d0e0e4736"
	edgeParent = "00f067aa0ba902b7"
	edgeState  = "mercury=r:0.25;d:1;o:edge,Vendor=1"
	edgeState2 = "congo=t61rcWkgMzE"
)

// chain is Mercury → OpenTelemetry → Mercury: "api" (Mercury agent, agenthttp middleware and
// transport) calls "order" (OTel SDK with the W3C TraceContext propagator, otelhttp handler and
// transport), which calls "stock" (Mercury again).
type chain struct {
	api, stock *agent.Agent
	otelSpans  *tracetest.SpanRecorder
	apiURL     string
	orderURL   string

	mu         sync.Mutex
	stockState []string // the tracestate lines stock received
}

func newChain(t *testing.T) *chain {
	t.Helper()
	c := &chain{otelSpans: tracetest.NewSpanRecorder()}
	c.api = newAgent(t, "api")
	c.stock = newAgent(t, "stock")

	stockMux := http.NewServeMux()
	stockMux.HandleFunc("GET /stock/{id}", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.stockState = r.Header.Values("Tracestate")
		c.mu.Unlock()
		io.WriteString(w, "7")
	})
	stock := httptest.NewServer(agenthttp.Middleware(c.stock, stockMux))
	t.Cleanup(stock.Close)

	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(c.otelSpans))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	otelOpts := []otelhttp.Option{otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{})}
	otelClient := &http.Client{Transport: otelhttp.NewTransport(http.DefaultTransport, otelOpts...)}
	order := httptest.NewServer(otelhttp.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		relay(w, r, otelClient, stock.URL+"/stock/42")
	}), "GET /order", otelOpts...))
	t.Cleanup(order.Close)
	c.orderURL = order.URL + "/order"

	apiClient := &http.Client{Transport: agenthttp.Transport(c.api, nil)}
	apiMux := http.NewServeMux()
	apiMux.HandleFunc("GET /checkout", func(w http.ResponseWriter, r *http.Request) {
		relay(w, r, apiClient, c.orderURL)
	})
	api := httptest.NewServer(agenthttp.Middleware(c.api, apiMux))
	t.Cleanup(api.Close)
	c.apiURL = api.URL + "/checkout"
	return c
}

func newAgent(t *testing.T, service string) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Config{Service: service, Domain: "shop", SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	return a
}

// relay answers with what url answers, calling it in r's context so the trace goes on.
func relay(w http.ResponseWriter, r *http.Request, client *http.Client, url string) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, url, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// get sends the edge's request to url.
func get(t *testing.T, url string, state ...string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Traceparent", "00-"+edgeTrace+"-"+edgeParent+"-01")
	for _, s := range state {
		req.Header.Add("Tracestate", s)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "7" {
		t.Fatalf("chain answered %d %q", resp.StatusCode, body)
	}
}

// spans closes a (draining its queue) and returns the spans it wrote, by kind.
func spans(t *testing.T, a *agent.Agent) map[schemas.SpanKind]schemas.Span {
	t.Helper()
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := map[schemas.SpanKind]schemas.Span{}
	res, err := spool.Scan(a.SpoolDir(), spool.StreamSpans, func(s *schemas.Schema, b []byte) error {
		var sp schemas.Span
		if _, err := schemas.DecodeBinary(s.Fingerprint, b, &sp); err != nil {
			return err
		}
		if _, dup := out[sp.Kind]; dup {
			t.Errorf("two %v spans", sp.Kind)
		}
		out[sp.Kind] = sp
		return nil
	})
	if err != nil || res != (spool.ScanResult{}) {
		t.Fatalf("spool: %+v, %v", res, err)
	}
	return out
}

// otel returns the middle hop's ended spans by kind.
func (c *chain) otel(t *testing.T) map[trace.SpanKind]sdktrace.ReadOnlySpan {
	t.Helper()
	out := map[trace.SpanKind]sdktrace.ReadOnlySpan{}
	for _, s := range c.otelSpans.Ended() {
		out[s.SpanKind()] = s
	}
	if len(out) != 2 || out[trace.SpanKindServer] == nil || out[trace.SpanKindClient] == nil {
		t.Fatalf("OTel spans: %v", c.otelSpans.Ended())
	}
	return out
}

func spanID(s trace.SpanID) schemas.SpanID { return schemas.SpanID(s) }

// TestMercuryThroughOTel: the dye mark and the sample rate cross an OpenTelemetry service intact,
// and the three services form one trace with an unbroken parent chain.
func TestMercuryThroughOTel(t *testing.T) {
	c := newChain(t)
	get(t, c.apiURL, edgeState, edgeState2)

	api, stock, otel := spans(t, c.api), spans(t, c.stock), c.otel(t)
	var traceID schemas.TraceID
	hex.Decode(traceID[:], []byte(edgeTrace))
	var edge schemas.SpanID
	hex.Decode(edge[:], []byte(edgeParent))

	apiServer, apiClient, stockServer := api[schemas.KindServer], api[schemas.KindClient], stock[schemas.KindServer]
	orderServer, orderClient := otel[trace.SpanKindServer], otel[trace.SpanKindClient]
	for _, s := range []schemas.Span{apiServer, apiClient, stockServer} {
		if s.TraceID != traceID {
			t.Errorf("%s %v: trace %v, want %v", s.Service, s.Kind, s.TraceID, traceID)
		}
	}
	for _, s := range []sdktrace.ReadOnlySpan{orderServer, orderClient} {
		if tid := s.SpanContext().TraceID(); schemas.TraceID(tid) != traceID {
			t.Errorf("OTel %v: trace %v, want %v", s.SpanKind(), tid, traceID)
		}
	}
	for _, link := range []struct {
		name          string
		parent, child schemas.SpanID
	}{
		{"edge → api server", edge, apiServer.ParentSpanID},
		{"api server → api client", apiServer.SpanID, apiClient.ParentSpanID},
		{"api client → order server (OTel)", apiClient.SpanID, spanID(orderServer.Parent().SpanID())},
		{"order server → order client (OTel)", spanID(orderServer.SpanContext().SpanID()), spanID(orderClient.Parent().SpanID())},
		{"order client (OTel) → stock server", spanID(orderClient.SpanContext().SpanID()), stockServer.ParentSpanID},
	} {
		if link.parent != link.child || link.parent.IsZero() {
			t.Errorf("%s: parent %v, child's parent %v", link.name, link.parent, link.child)
		}
	}

	// The point of issue 18: OTel kept Mercury's member, so the last service still knows.
	if got := orderServer.SpanContext().TraceState().Get("mercury"); got != "r:0.25;d:1;o:edge" {
		t.Errorf("OTel's tracestate lost Mercury's member: %q", orderServer.SpanContext().TraceState())
	}
	for _, s := range []schemas.Span{apiServer, apiClient, stockServer} {
		if !s.Dyed || s.SampleRate != 0.25 {
			t.Errorf("%s %v: dyed=%v rate %v, want dyed=true rate 0.25", s.Service, s.Kind, s.Dyed, s.SampleRate)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if want := "mercury=r:0.25;d:1;o:edge,congo=t61rcWkgMzE"; len(c.stockState) != 1 || c.stockState[0] != want {
		t.Errorf("stock received tracestate %q, want %q", c.stockState, want)
	}
}

// TestOTelDropsAnInvalidList shows what the chain catches: sent to the OTel service directly,
// the edge's list (one invalid member) is discarded whole, Mercury's member with it, and stock
// records the trace as undyed at rate 1. Mercury in front of OTel is what fixes it.
func TestOTelDropsAnInvalidList(t *testing.T) {
	c := newChain(t)
	get(t, c.orderURL, edgeState)
	stockServer := spans(t, c.stock)[schemas.KindServer]
	if stockServer.Dyed || stockServer.SampleRate != 1 {
		t.Fatalf("stock: dyed=%v rate %v; OTel Go now keeps part of an invalid list, and this test "+
			"no longer shows why Mercury must send a valid one", stockServer.Dyed, stockServer.SampleRate)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.stockState) != 0 {
		t.Errorf("stock received tracestate %q", c.stockState)
	}
}
