package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/gateway/bbr"
	"github.com/mercury-apm/mercury/gateway/breaker"
	"github.com/mercury-apm/mercury/gateway/degrade"
	"github.com/mercury-apm/mercury/gateway/ratelimit"
	"github.com/mercury-apm/mercury/gateway/retry"
	"github.com/mercury-apm/mercury/gateway/timeout"
	"github.com/mercury-apm/mercury/gateway/upstream"
	"github.com/mercury-apm/mercury/internal/clock"
	"github.com/mercury-apm/mercury/internal/deadline"
	"github.com/mercury-apm/mercury/internal/httpstatus"
)

// DyeHeader marks load-test traffic; it is passed through to upstreams.
const DyeHeader = "X-Mercury-Dye"

// Shed reasons, as reported in Outcome.ShedBy and metrics.
const (
	shedTier      = "tier"
	shedBBR       = "bbr"
	shedRateLimit = "ratelimit"
	shedBreaker   = "breaker"
	shedDegrade   = "degrade"
	shedBulkhead  = "bulkhead"
	shedDye       = "dye" // the switch stopping all dyed traffic
)

// route is one configured route with its middleware chain.
type route struct {
	g    *Gateway
	cfg  RouteConfig
	info RouteInfo
	m    *routeMetrics

	local, remote *upstream.Pool
	localTimeout  time.Duration
	remoteTimeout time.Duration
	budget        time.Duration // all tries of one request together

	// Each is nil (tierOn false) when its middleware is off.
	tierOn  bool
	bbr     *bbr.Limiter
	degrade *degrade.Switch
	limiter *ratelimit.Limiter
	breaker breaker.Breaker
	// Dyed traffic's own limiter and breaker (nil when the route has none).
	dyeLimiter *ratelimit.Limiter
	dyeBreaker breaker.Breaker
	dyn        *timeout.EMA
	window     *retry.Window // cross-region failover; nil without a remote region
	retry      retryPolicy

	bbrEdge, limitEdge, dyeLimitEdge edge
	proxy                            *httputil.ReverseProxy
	active                           atomic.Int64           // requests being served
	collectors                       []prometheus.Collector // scrape-time gauges, unregistered when a reload drops the route
	stopLoops                        context.CancelFunc     // ends its health checks and outlier sweeps (guarded by loops.mu)
}

// edge turns per-request rejections into start/stop transitions, so a
// limiter under pressure yields two events instead of one per request.
type edge struct {
	shedding   atomic.Bool
	lastReject atomic.Int64
}

// quietPeriod without rejections ends a shedding episode.
const quietPeriod = int64(time.Second)

func (e *edge) reject(clk clock.Clock) (started bool) {
	e.lastReject.Store(clk.Now())
	return e.shedding.CompareAndSwap(false, true)
}

// admit reads the clock only during an episode: an admission outside one has
// no transition to time, and it is the common case.
func (e *edge) admit(clk clock.Clock) (stopped bool) {
	return e.shedding.Load() && clk.Now()-e.lastReject.Load() >= quietPeriod && e.shedding.CompareAndSwap(true, false)
}

func (r *route) event(kind EventKind, attrs ...slog.Attr) { r.g.obs.Event(kind, r.info, attrs...) }

func (r *route) limiterEdge(e *edge, name string, rejected bool) {
	if rejected && e.reject(r.g.clock) {
		r.event(EventLimiter, slog.String("limiter", name), slog.Bool("shedding", true))
	} else if !rejected && e.admit(r.g.clock) {
		r.event(EventLimiter, slog.String("limiter", name), slog.Bool("shedding", false))
	}
}

func newRoute(g *Gateway, rc RouteConfig) (*route, error) {
	r := &route{g: g, cfg: rc, info: RouteInfo{Name: rc.Name, Service: rc.Service, Tier: rc.Tier, Region: g.cfg.Region}}
	wrap := func(err error) error { return fmt.Errorf("gateway: route %q: %w", rc.Name, err) }
	var err error
	clk := g.clock
	pool := func(uc *UpstreamConfig) (*upstream.Pool, error) {
		return upstream.New(upstream.Config{Instances: uc.Instances, Balance: uc.Balance, Health: uc.HealthCheck,
			Client: g.healthClient, Outlier: uc.Outlier, Clock: clk,
			OnHealth: func(instance string, healthy bool) {
				r.event(EventUpstreamHealth, slog.String("instance", instance), slog.Bool("healthy", healthy))
			},
			OnEject: func(instance string, ejected bool, reason string) {
				r.event(EventOutlier, slog.String("instance", instance), slog.Bool("ejected", ejected), slog.String("reason", reason))
			}})
	}
	if r.local, err = pool(&rc.Local); err != nil {
		return nil, wrap(err)
	}
	r.localTimeout = cmpOr(rc.Local.Timeout, 5*time.Second)
	if rc.Remote != nil {
		if r.remote, err = pool(rc.Remote); err != nil {
			return nil, wrap(err)
		}
		r.remoteTimeout = cmpOr(rc.Remote.Timeout, 5*time.Second)
	}
	r.tierOn = rc.enabled(MWTier)
	if rc.enabled(MWBBR) {
		if r.bbr, err = bbr.New(bbr.Config{Window: rc.BBR.Window, Buckets: rc.BBR.Buckets,
			CPUThreshold: g.cfg.CPU.Threshold, CPU: g.cpu, Clock: clk}); err != nil {
			return nil, wrap(err)
		}
	}
	if rc.enabled(MWDegrade) {
		if r.degrade, err = degrade.New(degrade.Config{Fallback: rc.Degrade.Fallback, Auto: rc.Degrade.Auto, Clock: clk, CacheBytes: rc.Degrade.CacheBytes,
			RetryAfter: g.cfg.RetryAfter,
			OnChange: func(on bool, reason string) {
				r.event(EventDegrade, slog.Bool("on", on), slog.String("reason", reason))
			}}); err != nil {
			return nil, wrap(err)
		}
	}
	if rc.enabled(MWRateLimit) {
		limiter := func(rl *RateLimitConfig) (*ratelimit.Limiter, error) {
			return ratelimit.New(ratelimit.Config{Limit: rl.Limit, Window: rl.Window, Buckets: rl.Buckets, Clock: clk})
		}
		if r.limiter, err = limiter(rc.RateLimit); err != nil {
			return nil, wrap(err)
		}
		if r.dyeLimiter, err = limiter(cmpOrNil(rc.Dye.RateLimit, rc.RateLimit)); err != nil {
			return nil, wrap(fmt.Errorf("dye: %w", err))
		}
	}
	if rc.enabled(MWBreaker) {
		onChange := func(extra ...slog.Attr) breaker.OnStateChange {
			return func(from, to breaker.State) {
				r.event(EventBreaker, append([]slog.Attr{slog.String("from", from.String()), slog.String("to", to.String())}, extra...)...)
			}
		}
		if r.breaker, err = newBreaker(rc.Breaker, clk, onChange()); err != nil {
			return nil, wrap(err)
		}
		if r.dyeBreaker, err = newBreaker(rc.Breaker, clk, onChange(slog.Bool("dyed", true))); err != nil {
			return nil, wrap(err)
		}
	}
	if rc.enabled(MWDynamicTimeout) {
		t := rc.Timeout
		if r.dyn, err = timeout.New(timeout.Config{Thwm: t.Thwm, Tmax: t.Tmax, Tavg: t.Tavg, N: t.N}); err != nil {
			return nil, wrap(err)
		}
	}
	if rc.enabled(MWRetry) {
		if r.retry, err = newRetryPolicy(rc, clk); err != nil {
			return nil, wrap(err)
		}
	}
	if rc.enabled(MWRetry) && r.remote != nil {
		if r.window, err = retry.New(retry.Config{Round: g.cfg.Retry.Round, SuccessThreshold: g.cfg.Retry.SuccessThreshold, Clock: clk,
			OnChange: func(from, to int64) {
				r.event(EventRetryWindow, slog.Int64("from", from), slog.Int64("to", to))
			}}); err != nil {
			return nil, wrap(err)
		}
	}
	r.budget = rc.Budget
	if r.budget == 0 { // the longest single try
		longestLocal := r.localTimeout
		if r.dyn != nil {
			longestLocal = rc.Timeout.Tmax
		}
		r.budget = max(longestLocal, r.remoteTimeout)
	}
	r.proxy = &httputil.ReverseProxy{
		Rewrite:      r.rewrite,
		Transport:    (*routeTransport)(r),
		ErrorHandler: r.proxyError,
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BufferPool:   g.bufPool,
	}
	if r.degrade != nil {
		r.proxy.ModifyResponse = r.modifyResponse
	}
	return r, nil
}

func cmpOrNil[T any](p, def *T) *T {
	if p != nil {
		return p
	}
	return def
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func newBreaker(c BreakerConfig, clk interface{ Now() int64 }, cb breaker.OnStateChange) (breaker.Breaker, error) {
	switch c.Kind {
	case "", "sre":
		return breaker.NewSRE(breaker.SREConfig{K: c.K, Window: c.Window, Buckets: c.Buckets, MinRequests: c.MinRequests,
			Clock: clk, OnStateChange: cb})
	case "classic":
		return breaker.NewClassic(breaker.ClassicConfig{MaxFailures: c.MaxFailures, FailureRatio: c.FailureRatio,
			MinRequests: c.MinRequests, Window: c.Window, Buckets: c.Buckets, OpenFor: c.OpenFor,
			HalfOpenQuota: c.HalfOpenQuota, CloseRatio: c.CloseRatio, Clock: clk, OnStateChange: cb})
	}
	return nil, fmt.Errorf("unknown breaker kind %q (want sre or classic)", c.Kind)
}

// reqState travels in the request context from serve to the transport and
// back into the Outcome. It is its own context node and carries the status
// writer, the request the proxy sees, the X-Forwarded-* header values and the
// local attempt's storage, so a request pays one allocation for all of them.
type reqState struct {
	context.Context
	sw         httpstatus.Recorder
	req        http.Request // the incoming request with this context
	shedBy     string
	upstream   string
	retried    bool
	failedOver bool
	// retriedLocally: a second local instance was tried; retrying: the
	// request holds a slot of the retry budget, released when it ends.
	retriedLocally, retrying bool
	dyed                     bool // load-test traffic
	observed                 bool // the Observer sees this request
	degraded                 bool // answered by the fallback after a failure
	err                      error
	deadline                 time.Time // end of the request's budget
	spent                    bool      // the caller sent a budget of 0
	fwd                      [3]string // X-Forwarded-For, -Host, -Proto
	local                    attemptState
}

type stateKey struct{}

// Value answers stateKey with the state itself.
func (st *reqState) Value(key any) any {
	if key == (stateKey{}) {
		return st
	}
	return st.Context.Value(key)
}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// serve runs the gateway-side middlewares (tier, BBR, degrade), then the
// proxy, whose transport runs the per-upstream ones.
func (r *route) serve(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	obs := r.g.obs
	observed := r.g.observed() // a plan may trace only a share of requests
	if !observed {
		obs = NopObserver{}
	}
	st := &reqState{Context: obs.RequestStart(req.Context(), r.info, req), observed: observed}
	st.sw.ResponseWriter = w
	st.dyed = dyeOf(req.Header) != ""
	sw := &st.sw
	st.deadline = start.Add(r.budget)
	if d, ok := deadline.FromHeader(req.Header); ok && d < r.budget {
		st.deadline = start.Add(d) // the caller has less time left than the route allows
		st.spent = d == 0
	}
	r.m.inFlight.Inc()
	r.active.Add(1)
	panicked := true
	defer func() {
		r.active.Add(-1)
		if st.retrying {
			r.retry.budget.Release()
		}
		r.m.inFlight.Dec()
		d := time.Since(start)
		status := sw.Code()
		switch {
		case status != 0:
		case panicked:
			// This runs while the panic unwinds, before recoverPanics
			// answers 502: report what the client will get, not a 200.
			status = http.StatusBadGateway
		default:
			status = http.StatusOK // handler wrote nothing: net/http sends 200
		}
		r.m.observe(st.dyed, status, d.Seconds())
		if c := r.g.chaos.Load(); c != nil && r.cfg.Tier == 1 && !st.dyed {
			c.guard(status) // the steady state is what real tier-1 users get
		}
		obs.RequestDone(st, r.info, Outcome{Method: req.Method, Status: status, Start: start, Duration: d,
			Upstream: st.upstream, Retried: st.retried, FailedOver: st.failedOver, RetriedLocally: st.retriedLocally, ShedBy: st.shedBy,
			Degraded: st.degraded || st.shedBy == shedDegrade, Dyed: st.dyed, Err: st.err})
	}()
	r.chain(st, req)
	panicked = false
}

// chain runs the middlewares. It is separate from serve so that serve can
// tell a normal return (any of the early ones) from a panic.
func (r *route) chain(st *reqState, req *http.Request) {
	sw := &st.sw
	if st.spent {
		st.err = errBudgetSpent // the caller has given up already: do no work for it
		http.Error(sw, http.StatusText(http.StatusGatewayTimeout), http.StatusGatewayTimeout)
		return
	}
	if st.dyed && r.g.dyeOff.Load() {
		r.refuse(sw, st, shedDye, http.StatusServiceUnavailable)
		return
	}
	if r.cfg.MaxConcurrent > 0 && r.active.Load() > r.cfg.MaxConcurrent { // serve counted this one
		r.refuse(sw, st, shedBulkhead, http.StatusServiceUnavailable)
		return
	}
	if r.g.shedTiers[r.cfg.Tier].Load() { // a plan sheds the whole tier
		r.refuse(sw, st, shedTier, http.StatusServiceUnavailable)
		return
	}
	if r.tierOn {
		done, err := r.g.table.Load().tiers.Allow(r.cfg.Tier)
		if err != nil {
			r.refuse(sw, st, shedTier, http.StatusServiceUnavailable)
			return
		}
		defer done(nil)
	}
	if r.bbr != nil {
		done, err := r.bbr.Allow()
		r.limiterEdge(&r.bbrEdge, shedBBR, err != nil)
		if err != nil {
			r.refuse(sw, st, shedBBR, http.StatusServiceUnavailable)
			return
		}
		defer done(nil)
	}
	if r.degrade != nil {
		done, err := r.degrade.Allow()
		if err != nil {
			st.shedBy = shedDegrade
			r.m.fallbacks.Inc()
			r.degrade.WriteFallback(sw, req)
			return
		}
		defer func() { done(breaker.Failure(sw.Code(), st.err)) }()
	}
	req = withContext(&st.req, req, st)
	if r.retry.on && r.replayable(req) {
		if err := r.bufferBody(req); err != nil {
			st.err = err
			http.Error(sw, "bad request body", http.StatusBadRequest)
			return
		}
	}
	r.proxy.ServeHTTP(sw, req)
}

func (r *route) refuse(w http.ResponseWriter, st *reqState, by string, status int) {
	st.shedBy = by
	r.m.shedBy(by)
	w.Header()["Retry-After"] = r.g.retryAfter
	http.Error(w, "overloaded", status)
}

// withContext is req.WithContext(ctx) stored in dst, which the caller has
// allocated anyway: WithContext is inlined and its result does not escape, so
// the copy costs no allocation of its own.
func withContext(dst, req *http.Request, ctx context.Context) *http.Request {
	*dst = *req.WithContext(ctx)
	return dst
}

// replayable reports whether the route may replay req remotely at all.
func (r *route) replayable(req *http.Request) bool {
	return retry.Idempotent(req.Method) || r.cfg.Retry.NonIdempotent
}

// bufferBody reads a small body into memory so it can be sent twice. A body
// over the limit is left streaming and its request is not replayed.
func (r *route) bufferBody(req *http.Request) error {
	if req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	limit := r.g.cfg.Retry.MaxBodyBytes
	if req.ContentLength > limit {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > limit {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), req.Body), req.Body}
		return nil
	}
	req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return nil
}

func (r *route) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = r.cfg.Name // placeholder; the transport sets the instance
	if r.cfg.StripPrefix {
		p := "/" + strings.TrimPrefix(pr.In.URL.Path, r.cfg.Prefix)
		pr.Out.URL.Path = strings.Replace(p, "//", "/", 1)
		pr.Out.URL.RawPath = ""
	}
	st := stateOf(pr.Out.Context())
	st.setXForwarded(pr)
	if dye := dyeOf(pr.In.Header); dye != "" {
		pr.Out.Header.Set(DyeHeader, dye)
	}
	// Once per request: a failover replays a clone of this request, so both
	// attempts carry the same trace context.
	if r.g.prop != nil && st.observed {
		r.g.prop.Propagate(pr.Out.Context(), pr.Out.Header)
	}
}

// setXForwarded is httputil.ProxyRequest.SetXForwarded with the values in
// st.fwd instead of one allocation each. ReverseProxy has already stripped the
// client's X-Forwarded-* headers, so there is no prior X-Forwarded-For to
// extend.
func (st *reqState) setXForwarded(pr *httputil.ProxyRequest) {
	h := pr.Out.Header
	st.fwd[1], st.fwd[2] = pr.In.Host, "http"
	if pr.In.TLS != nil {
		st.fwd[2] = "https"
	}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		st.fwd[0] = ip
		h["X-Forwarded-For"] = st.fwd[0:1:1] // capped: an append reallocates
	}
	h["X-Forwarded-Host"] = st.fwd[1:2:2]
	h["X-Forwarded-Proto"] = st.fwd[2:3:3]
}

// dyeOf reads the dye mark under its canonical key, without Header.Get's
// canonicalization.
func dyeOf(h http.Header) string {
	if v := h[DyeHeader]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// errUpstreamStatus turns a failed upstream response into a proxy error, so
// the error handler answers it with the route's fallback (degrade.on_failure).
type errUpstreamStatus struct{ code int }

func (e errUpstreamStatus) Error() string {
	return fmt.Sprintf("gateway: upstream answered %d", e.code)
}

// modifyResponse keeps good responses for the cache fallback and, with
// degrade.on_failure, hands failed ones to the fallback.
func (r *route) modifyResponse(resp *http.Response) error {
	if r.cfg.Degrade.OnFailure && breaker.Failure(resp.StatusCode, nil) != nil {
		return errUpstreamStatus{resp.StatusCode} // ReverseProxy closes the body
	}
	return r.remember(resp)
}

// remember keeps good GET responses for the cache fallback, per method, URL
// and Vary (see degrade.ResponseCache for what is never kept). It keys by the
// client's request, not the rewritten one sent upstream.
func (r *route) remember(resp *http.Response) error {
	in := &stateOf(resp.Request.Context()).req
	if resp.ContentLength < 0 || resp.ContentLength > degrade.MaxCachedBody || r.degrade.FallbackKind() != degrade.Cache ||
		!degrade.Storable(in, resp.StatusCode, resp.Header) {
		return nil
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	r.degrade.Cache().Put(in, resp.StatusCode, resp.Header, b)
	return nil
}

// proxyError maps transport errors to statuses: a limiter's refusal is 429,
// an open breaker or no healthy instance 503, a timeout 504, anything else
// 502.
func (r *route) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	st := stateOf(req.Context())
	st.err = err
	if r.cfg.Degrade.OnFailure && r.degrade != nil && !isRefusal(err) && !errors.Is(err, context.Canceled) {
		// A single failed request gets the fallback, switch on or not.
		st.degraded = true
		r.m.fallbacks.Inc()
		r.degrade.WriteFallback(w, &st.req)
		return
	}
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, ratelimit.ErrLimited):
		status = http.StatusTooManyRequests
	case errors.Is(err, breaker.ErrOpen), errors.Is(err, upstream.ErrNoHealthy):
		status = http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	}
	if status != http.StatusBadGateway && status != http.StatusGatewayTimeout {
		w.Header()["Retry-After"] = r.g.retryAfter // a refusal: say when to come back
	}
	http.Error(w, http.StatusText(status), status)
}
