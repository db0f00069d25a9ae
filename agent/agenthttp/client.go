package agenthttp

import (
	"net/http"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/schemas"
)

// Transport records a client span (KindClient, CategoryHTTP) for every request and injects
// traceparent/tracestate, so the server's Middleware continues the trace. base nil means
// http.DefaultTransport.
//
// The peer is WithPeerName's name, else the URL's host. The operation is WithRouteFunc's
// template, else "HTTP <METHOD>" (the client rarely knows the server's route). The span ends
// when the response headers arrive: waiting for the body to be closed would lose spans of
// callers that never close it. Status: error on a transport error and on 4xx/5xx (for the
// caller, a refused request failed).
//
// Tracing never breaks the request: the caller's request is not modified (a clone carries the
// headers), and when there is no agent or the category is switched off the caller's context
// is still propagated, so a trace passing through this process stays whole.
func Transport(a *agent.Agent, base http.RoundTripper, opts ...Option) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{a: a, base: base, cfg: newConfig(opts)}
}

type transport struct {
	a    *agent.Agent
	base http.RoundTripper
	cfg  *config
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	out, span := t.start(req)
	resp, err := t.base.RoundTrip(out)
	if span.Sampled() {
		t.finish(span, resp, err)
	}
	return resp, err
}

func (t *transport) start(req *http.Request) (*http.Request, *agent.Span) {
	m := method(req.Method)
	op := ""
	if t.cfg.route != nil {
		op = t.cfg.route(req)
	}
	if op == "" {
		op = fallbackOps[m]
	}
	ctx, span := t.a.Start(req.Context(), op, agent.KindClient, agent.CategoryHTTP)
	sc, ok := agent.SpanContextFrom(ctx)
	if !ok || !sc.IsValid() {
		return req, span // nothing to propagate: leave the request untouched
	}
	// RoundTrippers must not modify the caller's request; the clone owns its headers.
	out := req.Clone(ctx)
	agent.Inject(sc, agent.HeaderCarrier(out.Header))
	if span.Sampled() {
		peer := t.cfg.peer
		if peer == "" && req.URL != nil {
			peer = req.URL.Host
		}
		span.SetPeer(peer)
		span.SetTag("http.method", m)
	}
	return out, span
}

func (t *transport) finish(span *agent.Span, resp *http.Response, err error) {
	switch {
	case err != nil:
		span.RecordError(err)
	case resp.StatusCode >= 400:
		span.SetTag("http.status_code", statusText(resp.StatusCode))
		span.SetStatus(schemas.StatusError, resp.StatusCode)
	default:
		span.SetTag("http.status_code", statusText(resp.StatusCode))
		span.SetStatus(schemas.StatusOK, resp.StatusCode)
	}
	span.End()
}
