package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/schemas"
)

// AgentObserver reports the gateway through the Mercury agent: every request
// is a server span named after its route, every transition an agent Event.
// It also propagates the trace to the upstreams (it is a Propagator), so
// passing it as Config.Observer is all the wiring there is.
//
// Span tags: gateway.tier, gateway.region (local or remote: where the last
// attempt went; absent when none was made), gateway.retried,
// gateway.failed_over, gateway.degraded, gateway.shed_by (only when a
// middleware refused the request), http.method, http.status_code. The span
// is an error on a 5xx, unless the client went away first.
type AgentObserver struct{ a *agent.Agent }

// NewAgentObserver reports through a. A nil agent records nothing.
func NewAgentObserver(a *agent.Agent) *AgentObserver { return &AgentObserver{a: a} }

var (
	_ Observer   = (*AgentObserver)(nil)
	_ Propagator = (*AgentObserver)(nil)
)

// Span tag keys.
const (
	TagTier       = "gateway.tier"
	TagRegion     = "gateway.region"
	TagRetried    = "gateway.retried"
	TagFailedOver = "gateway.failed_over"
	// TagRetriedLocally is set (to "true") only when another local
	// instance was tried.
	TagRetriedLocally = "gateway.retried_locally"
	TagShedBy         = "gateway.shed_by"
	TagDegraded       = "gateway.degraded"
	TagMethod         = "http.method"
	TagStatusCode     = "http.status_code"
)

// RequestStart continues the caller's trace from traceparent/tracestate, or
// starts a root, dyed when the request carries X-Mercury-Dye. A malformed
// header only means a new root.
func (o *AgentObserver) RequestStart(ctx context.Context, route RouteInfo, r *http.Request) context.Context {
	if sc, ok := agent.Extract(agent.HeaderCarrier(r.Header)); ok {
		ctx = agent.ContextWithRemote(ctx, sc) // the root's dye mark travels in tracestate
	} else if dyeOf(r.Header) != "" {
		ctx = agent.WithDye(ctx)
	}
	sctx, s := o.a.Start(ctx, route.Name, agent.KindServer, agent.CategoryHTTP)
	if s == nil {
		// Not traced (kill switch, http category off): hide any span of an
		// enclosing handler, so RequestDone cannot end someone else's span.
		return untraced{ctx}
	}
	return sctx
}

// RequestDone tags and ends the request's span.
func (o *AgentObserver) RequestDone(ctx context.Context, route RouteInfo, out Outcome) {
	s := agent.FromContext(ctx)
	if s == nil {
		return
	}
	clientGone := errors.Is(out.Err, context.Canceled)
	if out.Err != nil && out.Status >= 500 && !clientGone && !isRefusal(out.Err) {
		// An upstream failure (connection error, timeout, no healthy
		// instance): an exception event even when the trace is not sampled.
		s.RecordError(out.Err)
	}
	if !s.Sampled() {
		return
	}
	s.SetTag(TagTier, strconv.Itoa(route.Tier)) // 1–4: strconv's static small numbers
	s.SetTag(TagMethod, out.Method)
	s.SetTag(TagStatusCode, statusCode(out.Status))
	if out.Upstream != UpstreamNone {
		s.SetTag(TagRegion, out.Upstream)
	}
	s.SetTag(TagRetried, strconv.FormatBool(out.Retried))
	s.SetTag(TagFailedOver, strconv.FormatBool(out.FailedOver))
	if out.RetriedLocally {
		s.SetTag(TagRetriedLocally, "true")
	}
	s.SetTag(TagDegraded, strconv.FormatBool(out.Degraded))
	if out.ShedBy != "" {
		s.SetTag(TagShedBy, out.ShedBy)
	}
	st := schemas.StatusOK
	if out.Status >= 500 && !clientGone {
		st = schemas.StatusError
	}
	s.SetStatus(st, out.Status)
	s.End()
}

// Propagate writes the request span's context (or, when the request is not
// traced, the caller's) into the upstream request's headers.
func (o *AgentObserver) Propagate(ctx context.Context, h http.Header) {
	if sc, ok := agent.SpanContextFrom(ctx); ok {
		agent.Inject(sc, agent.HeaderCarrier(h))
	}
}

// eventTypes maps the gateway's transitions onto the agent's event types.
var eventTypes = map[EventKind]string{
	EventBreaker:        schemas.EventBreaker,
	EventLimiter:        schemas.EventLimiter,
	EventDegrade:        schemas.EventDegrade,
	EventRetryWindow:    schemas.EventRetryWindow,
	EventUpstreamHealth: schemas.EventUpstreamHealth,
	EventOutlier:        schemas.EventUpstreamHealth,
	EventPanic:          schemas.EventException,
}

// Event emits the transition as an agent Event (never sampled). Name is the
// route; the attributes are the transition's own plus kind, route, service,
// tier and the gateway's region. A panic is an exception event named
// "panic" with the stack, so the alerter groups it like any other exception:
// the gateway reports it from inside its deferred recover, so the stack still
// holds the panicking frames.
func (o *AgentObserver) Event(kind EventKind, route RouteInfo, attrs ...slog.Attr) {
	ev := agent.Event{Type: eventTypes[kind], Name: route.Name, Operation: route.Name,
		Attributes: make(map[string]string, len(attrs)+5)}
	if ev.Type == "" {
		ev.Type = string(kind) // a kind added later still reaches the alerter
	}
	ev.Attributes["kind"] = string(kind)
	ev.Attributes["route"] = route.Name
	ev.Attributes["service"] = route.Service
	ev.Attributes["tier"] = strconv.Itoa(route.Tier)
	ev.Attributes["region"] = route.Region
	var msg strings.Builder
	msg.WriteString(string(kind))
	for _, a := range attrs {
		v := a.Value.String()
		ev.Attributes[a.Key] = v
		msg.WriteByte(' ')
		msg.WriteString(a.Key)
		msg.WriteByte('=')
		msg.WriteString(v)
	}
	ev.Message = msg.String()
	if kind == EventPanic {
		ev.Name, ev.Message, ev.Stack = "panic", ev.Attributes["value"], string(debug.Stack())
	}
	o.a.Emit(ev)
}

// isRefusal reports a local limiter or breaker refusal: the gateway
// protecting an upstream, not an upstream failure.
func isRefusal(err error) bool {
	var r errRefused
	return errors.As(err, &r)
}

// untraced hides the spans of the contexts it wraps; everything else,
// including a remote parent for propagation, passes through.
type untraced struct{ context.Context }

func (u untraced) Value(k any) any {
	v := u.Context.Value(k)
	if _, ok := v.(*agent.Span); ok {
		return nil
	}
	return v
}

// statusCodes holds the decimal text of every HTTP status, so tagging one
// allocates nothing.
var statusCodes = func() (t [500]string) {
	for i := range t {
		t[i] = strconv.Itoa(100 + i)
	}
	return t
}()

func statusCode(code int) string {
	if code >= 100 && code < 600 {
		return statusCodes[code-100]
	}
	return strconv.Itoa(code)
}
