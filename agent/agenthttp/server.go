package agenthttp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/internal/deadline"
	"github.com/mercury-apm/mercury/internal/httpstatus"
	"github.com/mercury-apm/mercury/schemas"
)

// Middleware records a server span (KindServer, CategoryHTTP) for every request next serves.
//
// The span continues the caller's trace when the request carries a valid W3C traceparent, and
// follows the caller's sampling decision; a missing or malformed header starts a new root and
// never fails the request. A new root is dyed (load-test traffic) when the request carries
// "X-Mercury-Dye: 1"; a continued trace keeps its root's mark from tracestate.
//
// The operation is the route template: http.ServeMux (Go 1.22+) stores the matched pattern in
// Request.Pattern during routing, on the request this middleware passes down, so it is read
// once next returns. Put the middleware directly around the mux (an intermediate middleware
// that replaces the request with r.WithContext hides the pattern), or give WithRouteFunc.
// Unrouted requests are named "HTTP <METHOD>", never by their path.
//
// A request carrying X-Mercury-Budget-Ms (what its caller, such as the Mercury gateway, has
// left of its budget) gets a context with that deadline, so the handler and its outgoing
// calls stop when the caller has given up.
//
// Tags: http.method, http.status_code. Status: error on 5xx and on a handler panic, which is
// recorded and panicked again so the host's own recovery (or net/http's) still sees it.
func Middleware(a *agent.Agent, next http.Handler, opts ...Option) http.Handler {
	return &handler{a: a, next: next, cfg: newConfig(opts)}
}

type handler struct {
	a    *agent.Agent
	next http.Handler
	cfg  *config
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if d, ok := deadline.FromHeader(r.Header); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if sc, ok := agent.Extract(agent.HeaderCarrier(r.Header)); ok {
		ctx = agent.ContextWithRemote(ctx, sc)
	} else if r.Header.Get(agent.HeaderDye) == "1" {
		ctx = agent.WithDye(ctx)
	}
	m := method(r.Method)
	ctx, span := h.a.Start(ctx, fallbackOps[m], agent.KindServer, agent.CategoryHTTP)
	r = r.WithContext(ctx)
	if !span.Sampled() {
		// Nothing to record, but the (unsampled or remote) context still reaches outgoing
		// calls, so the decision travels downstream.
		h.next.ServeHTTP(w, r)
		return
	}
	span.SetTag("http.method", m)
	h.businessKeys(span, r)
	rw := wrap(w)
	defer func() {
		if v := recover(); v != nil {
			code := http.StatusInternalServerError // what a proxy in front reports, if nothing was sent
			if rw.Code() != 0 {
				code = rw.Code()
			}
			h.finish(span, r, code, m)
			span.SetStatus(schemas.StatusError, code)
			if v != http.ErrAbortHandler { // the handler's deliberate way to abort: not a bug
				span.RecordError(panicError{v})
			}
			span.End()
			panic(v)
		}
	}()
	h.next.ServeHTTP(rw.writer(), r)
	code := rw.status()
	h.finish(span, r, code, m)
	switch {
	case code == 0: // hijacked: the status line is the handler's business
	case code >= 500:
		span.SetStatus(schemas.StatusError, code)
	default:
		span.SetStatus(schemas.StatusOK, code)
	}
	span.End()
}

// finish names the span after routing and tags the status code.
func (h *handler) finish(span *agent.Span, r *http.Request, code int, m string) {
	op := ""
	if h.cfg.route != nil {
		op = h.cfg.route(r)
	}
	if op == "" && r.Pattern != "" {
		op = r.Pattern
		if !strings.HasPrefix(op, m+" ") && op[0] == '/' {
			op = m + " " + op // a method-less pattern: the method still tells GET from POST
		}
	}
	if op != "" {
		span.SetOperation(op)
	}
	if code != 0 {
		span.SetTag("http.status_code", statusText(code))
	}
}

func (h *handler) businessKeys(span *agent.Span, r *http.Request) {
	for _, k := range h.cfg.bizKeys {
		var v string
		if k.header {
			v = r.Header.Get(k.name)
		} else {
			v = queryValue(r.URL.RawQuery, k.name)
		}
		if v = strings.TrimSpace(v); validKeyValue(v) {
			span.SetBusinessKey(k.key, v)
		}
	}
}

// queryValue is url.Values.Get without parsing the whole query into a map (three allocations
// per request for one or two wanted keys). Like ParseQuery, it skips malformed pairs.
func queryValue(raw, name string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			if !strings.ContainsAny(k, "%+") {
				continue
			}
			if uk, err := url.QueryUnescape(k); err != nil || uk != name {
				continue
			}
		}
		if uv, err := url.QueryUnescape(v); err == nil { // allocates only when v has escapes
			return uv
		}
	}
	return ""
}

// statusCodes spares the common codes a strconv allocation per request.
var statusCodes = func() (t [600]string) {
	for i := 100; i < len(t); i++ {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func statusText(code int) string {
	if code >= 0 && code < len(statusCodes) && statusCodes[code] != "" {
		return statusCodes[code]
	}
	return strconv.Itoa(code)
}

// panicError carries a handler's panic value into RecordError, so alert signatures group
// panics under one class ("agenthttp.panicError") with the value as message.
type panicError struct{ v any }

func (p panicError) Error() string { return fmt.Sprintf("panic: %v", p.v) }

func (p panicError) Unwrap() error {
	err, _ := p.v.(error)
	return err
}

// responseWriter notes the status the handler sends. Hijack is offered only when the real
// writer has it (HTTP/1), because libraries choose their code path by asserting http.Hijacker.
type responseWriter struct {
	httpstatus.Recorder
	hijacked bool
}

type hijackWriter struct{ *responseWriter }

func wrap(w http.ResponseWriter) *responseWriter {
	return &responseWriter{Recorder: httpstatus.Recorder{ResponseWriter: w}}
}

func (w *responseWriter) writer() http.ResponseWriter {
	if _, ok := w.ResponseWriter.(http.Hijacker); ok {
		return hijackWriter{w}
	}
	return w
}

// status is what the client got: net/http sends 200 when the handler wrote nothing.
func (w *responseWriter) status() int {
	switch {
	case w.hijacked:
		return 0
	case w.Code() == 0:
		return http.StatusOK
	}
	return w.Code()
}

func (w hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := w.ResponseWriter.(http.Hijacker).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}
