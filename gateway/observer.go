package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// RouteInfo identifies the route a request or event belongs to.
type RouteInfo struct {
	Name    string
	Service string
	Tier    int
	Region  string // the gateway's own region
}

// Which region the request's last upstream attempt went to.
const (
	UpstreamNone   = ""       // shed, degraded, or no healthy instance
	UpstreamLocal  = "local"  // the local region
	UpstreamRemote = "remote" // the remote region (failover)
)

// Outcome describes one finished request.
type Outcome struct {
	Method   string
	Status   int // as sent to the client
	Start    time.Time
	Duration time.Duration
	Upstream string // region of the last attempt: UpstreamNone, UpstreamLocal or UpstreamRemote
	// Retried: the local attempt failed and the request was replayed
	// remotely. FailedOver: the request went to the remote region at all
	// (also when the local side was never tried because a limiter or the
	// breaker refused it).
	Retried    bool
	FailedOver bool
	// RetriedLocally: a local try failed and another local instance was
	// tried before any failover.
	RetriedLocally bool
	// ShedBy names the middleware that refused the request locally: tier,
	// bbr, ratelimit, breaker or degrade; empty when none did. A request
	// refused locally may still have succeeded remotely.
	ShedBy   string
	Degraded bool // answered by a degradation fallback
	Dyed     bool // carried the X-Mercury-Dye load-test header
	Err      error
}

// EventKind names a state transition.
type EventKind string

// Event kinds. Attributes are documented per kind in docs/gateway.md.
const (
	EventBreaker        EventKind = "breaker_state"   // from, to
	EventLimiter        EventKind = "limiter"         // limiter, shedding
	EventDegrade        EventKind = "degrade"         // on, reason
	EventRetryWindow    EventKind = "retry_window"    // from, to
	EventUpstreamHealth EventKind = "upstream_health" // instance, healthy
	EventOutlier        EventKind = "outlier"         // instance, ejected, reason
	EventChaos          EventKind = "chaos"           // state (started, ended), the fault, reason
	EventPanic          EventKind = "panic"           // value
)

// Observer is the instrumentation seam. The gateway calls RequestStart before
// any middleware runs (the returned context flows to the upstream request,
// so a tracer can start a server span there and a RoundTripper can propagate
// it), RequestDone once the response is written, and Event on every breaker,
// limiter, degradation, retry-window and health transition — never per
// request. Implementations must be safe for concurrent use and fast.
type Observer interface {
	RequestStart(ctx context.Context, route RouteInfo, r *http.Request) context.Context
	RequestDone(ctx context.Context, route RouteInfo, o Outcome)
	Event(kind EventKind, route RouteInfo, attrs ...slog.Attr)
}

// Propagator is an optional extension of Observer. When the Observer
// implements it, the gateway calls Propagate once per proxied request, with
// the context RequestStart returned and the outgoing request's headers, so a
// tracer can write its trace context (W3C traceparent) for the upstreams.
// Doing it where the gateway builds the outgoing request keeps it working
// with the gateway's own tuned transport; no Config.Transport wrapper is
// needed.
type Propagator interface {
	Propagate(ctx context.Context, h http.Header)
}

// NopObserver ignores everything.
type NopObserver struct{}

// RequestStart returns ctx.
func (NopObserver) RequestStart(ctx context.Context, _ RouteInfo, _ *http.Request) context.Context {
	return ctx
}

// RequestDone does nothing.
func (NopObserver) RequestDone(context.Context, RouteInfo, Outcome) {}

// Event does nothing.
func (NopObserver) Event(EventKind, RouteInfo, ...slog.Attr) {}

// SlogObserver logs events at Info and requests at Debug. Request logging
// costs nothing unless Debug is enabled, so the hot path stays log-free in
// production.
type SlogObserver struct{ Logger *slog.Logger }

// RequestStart returns ctx.
func (SlogObserver) RequestStart(ctx context.Context, _ RouteInfo, _ *http.Request) context.Context {
	return ctx
}

// RequestDone logs the request at Debug.
func (o SlogObserver) RequestDone(ctx context.Context, r RouteInfo, out Outcome) {
	if !o.Logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	o.Logger.LogAttrs(ctx, slog.LevelDebug, "request", slog.String("route", r.Name),
		slog.String("method", out.Method), slog.Int("status", out.Status),
		slog.Duration("duration", out.Duration), slog.String("upstream", out.Upstream),
		slog.Bool("retried", out.Retried), slog.Bool("failed_over", out.FailedOver),
		slog.String("shed_by", out.ShedBy), slog.Bool("degraded", out.Degraded))
}

// Event logs the transition at Info.
func (o SlogObserver) Event(kind EventKind, r RouteInfo, attrs ...slog.Attr) {
	all := append([]slog.Attr{slog.String("kind", string(kind)), slog.String("route", r.Name)}, attrs...)
	o.Logger.LogAttrs(context.Background(), slog.LevelInfo, "gateway event", all...)
}
