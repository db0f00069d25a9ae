// Package gateway is Mercury's resilience gateway: a reverse proxy whose
// routes compose the primitives in the subpackages — sliding-window rate
// limit, BBR adaptive limit, SRE or classic breaker, EMA dynamic timeout,
// tiered shedding, degradation switches and cross-region failover under the
// adaptive retry window. See docs/gateway.md.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/getsentry/sentry-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/gateway/cpu"
	"github.com/mercury-apm/mercury/gateway/degrade"
	"github.com/mercury-apm/mercury/gateway/retry"
	"github.com/mercury-apm/mercury/internal/clock"
	"github.com/mercury-apm/mercury/internal/daemon"
)

// Gateway is a configured proxy. Create it with New, serve Handler and
// AdminHandler yourself or call Run, and Close it when done.
type Gateway struct {
	cfg           Config
	log           *slog.Logger
	obs           Observer
	prop          Propagator // obs, when it propagates trace context
	clock         clock.Clock
	cpu           cpu.Source
	sampler       *cpu.Sampler // nil when the CPU source was injected
	transport     http.RoundTripper
	ownsTransport *http.Transport
	// health probes get their own client so they never go through an
	// injected (instrumented) transport and Close can drop their connections.
	healthTransport *http.Transport
	healthClient    *http.Client
	registry        *prometheus.Registry
	metrics         *metrics
	retries         retry.Switches
	bufPool         httputil.BufferPool
	sentry          *sentry.Client
	handler         http.Handler

	// table is the routes, plans and tier shedder of the current config;
	// Reload swaps it whole, and requests in flight finish on the old one.
	table atomic.Pointer[routeTable]
	loops loops

	// Operator state. opsMu serialises its writers (admin API, plans) and
	// the state file; readers on the hot path use the atomics.
	opsMu      sync.Mutex
	dyeOff     atomic.Bool                 // the switch stopping all dyed traffic
	shedTiers  [5]atomic.Bool              // tiers refused outright (index 1–4), set by plans
	sampling   atomic.Uint64               // float64 bits: share of requests the Observer sees
	retryAfter []string                    // Retry-After value on the gateway's own 429/503
	chaos      atomic.Pointer[chaos]       // the running fault-injection experiment
	chaosLast  atomic.Pointer[ChaosStatus] // how the last one ended

	draining  atomic.Bool
	closeOnce sync.Once
}

// New validates cfg and builds the gateway. It starts no goroutines; Run (or
// Start) does.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	applyDefaults(&cfg)
	g := &Gateway{cfg: cfg, log: cfg.Logger, obs: cfg.Observer, clock: clock.Or(cfg.Clock),
		registry: cfg.Registry, bufPool: newBufferPool()}
	g.setSampleRate(1)
	if g.obs == nil {
		g.obs = SlogObserver{Logger: g.log}
	}
	g.prop, _ = g.obs.(Propagator)
	g.cpu = cfg.CPUSource
	if g.cpu == nil {
		g.sampler = cpu.NewSampler(cpu.NewCounter(cfg.CPU.CgroupRoot, cfg.CPU.ProcStat, nil), cfg.CPU.Decay)
		g.cpu = g.sampler
	}
	g.transport = cfg.Transport
	if g.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 256
		t.MaxIdleConns = 1024
		g.transport, g.ownsTransport = t, t
	}
	g.healthTransport = http.DefaultTransport.(*http.Transport).Clone()
	g.healthClient = &http.Client{Transport: g.healthTransport}
	g.metrics = newMetrics(g.registry)
	g.retries.SetGlobal(!cfg.Retry.Disabled)
	g.dyeOff.Store(cfg.DyeDisabled)
	g.retryAfter = []string{degrade.RetryAfter(cfg.RetryAfter)}
	for _, s := range cfg.Retry.DisabledServices {
		g.retries.SetService(s, false)
	}
	t, err := g.buildTable(cfg, nil)
	if err != nil {
		return nil, err
	}
	t.register(g.registry)
	g.table.Store(t)
	if err := g.restoreState(); err != nil {
		t.unregister(g.registry)
		return nil, err
	}
	if cfg.SentryDSN != "" {
		if g.sentry, err = sentry.NewClient(sentry.ClientOptions{Dsn: cfg.SentryDSN, AttachStacktrace: true}); err != nil {
			return nil, fmt.Errorf("gateway: sentry: %w", err)
		}
	}
	g.handler = g.recoverPanics(http.HandlerFunc(g.dispatch))
	return g, nil
}

// bufferPool recycles the proxy's 32 KiB copy buffers. It pools array
// pointers: Put converts the slice back to one instead of allocating a new
// *[]byte per request.
type bufferPool struct{ p sync.Pool }

const copyBufSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufSize]byte)[:] }

func (b *bufferPool) Put(x []byte) {
	if len(x) == copyBufSize {
		b.p.Put((*[copyBufSize]byte)(x))
	}
}

func applyDefaults(c *Config) {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8480"
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:8481"
	}
	if c.AdminToken == "" {
		c.AdminToken = os.Getenv("MERCURY_ADMIN_TOKEN") // the one name every daemon reads
	}
	if c.SentryDSN == "" {
		c.SentryDSN = os.Getenv("SENTRY_DSN")
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.CPU.Threshold == 0 {
		c.CPU.Threshold = 0.8
	}
	if c.CPU.Interval == 0 {
		c.CPU.Interval = 500 * time.Millisecond
	}
	if c.CPU.CgroupRoot == "" {
		c.CPU.CgroupRoot = "/sys/fs/cgroup"
	}
	if c.CPU.ProcStat == "" {
		c.CPU.ProcStat = "/proc/stat"
	}
	if c.Retry.MaxBodyBytes == 0 {
		c.Retry.MaxBodyBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Handler is the proxy handler.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Retries are the operator's retry switches (global and per service).
func (g *Gateway) Retries() *retry.Switches { return &g.retries }

func (g *Gateway) dispatch(w http.ResponseWriter, req *http.Request) {
	for _, r := range g.table.Load().routes {
		if strings.HasPrefix(req.URL.Path, r.cfg.Prefix) {
			r.serve(w, req)
			return
		}
	}
	http.NotFound(w, req)
}

// recoverPanics keeps one broken request from taking the server down: the
// client gets a 502, the panic goes to Sentry (or the log) with its stack.
func (g *Gateway) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { // the proxy aborting a broken stream
				panic(v)
			}
			g.metrics.panics.Inc()
			g.reportPanic(req, v)
			http.Error(w, http.StatusText(http.StatusBadGateway), http.StatusBadGateway)
		}()
		next.ServeHTTP(w, req)
	})
}

func (g *Gateway) reportPanic(req *http.Request, v any) {
	info := RouteInfo{Region: g.cfg.Region}
	for _, r := range g.table.Load().routes {
		if strings.HasPrefix(req.URL.Path, r.cfg.Prefix) {
			info = r.info
			break
		}
	}
	g.obs.Event(EventPanic, info, slog.String("value", fmt.Sprint(v)))
	if g.sentry == nil {
		g.log.Error("panic serving request", "route", info.Name, "panic", v, "stack", string(debug.Stack()))
		return
	}
	g.log.Error("panic serving request; reported to Sentry", "route", info.Name, "panic", v)
	scope := sentry.NewScope()
	scope.SetTag("route", info.Name)
	scope.SetTag("service", info.Service)
	scope.SetTag("region", info.Region)
	scope.SetRequest(req)
	err, ok := v.(error)
	if !ok {
		err = fmt.Errorf("panic: %v", v)
	}
	// Captured inside the deferred recover, so the stack trace still holds
	// the panicking frames.
	g.sentry.CaptureException(err, &sentry.EventHint{RecoveredException: v, Request: req}, scope)
}

// Start launches the background loops — CPU sampling (unless a CPU source
// was injected) and active health checks — until ctx ends. The returned
// function waits for them to stop.
func (g *Gateway) Start(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	if g.sampler != nil {
		wg.Go(func() {
			if err := g.sampler.Run(ctx, g.cfg.CPU.Interval); err != nil {
				g.log.Warn("cpu sampling unavailable; BBR will not shed", "err", err)
			}
		})
	}
	// Health checks and outlier sweeps run per route, so a reload can start
	// the new routes' loops and stop the old ones'.
	g.loops.start(ctx, &wg, func() []*route { return g.table.Load().routes })
	return func() {
		g.loops.stop()
		wg.Wait()
	}
}

// Run serves the proxy on cfg.Listen until ctx ends, then drains: Ready turns to an error
// (/readyz 503), in-flight requests get ShutdownTimeout to finish, Sentry is flushed. The
// admin API is served apart, on cfg.AdminListen (daemon.Run with Routes and Ready).
func (g *Gateway) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	return g.Serve(ctx, ln)
}

// longestBudget is the longest any route lets a request take (routes may reload: the
// write timeout set at Serve uses the routes of that moment, and at least a minute).
func (g *Gateway) longestBudget() time.Duration {
	longest := time.Minute
	for _, r := range g.table.Load().routes {
		longest = max(longest, r.budget)
	}
	return longest
}

// Serve is Run on a listener the caller opened.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	defer g.Close()
	bg, stop := context.WithCancel(ctx)
	wait := g.Start(bg)
	defer wait()
	defer stop()
	// A proxy's responses may stream for long: the write timeout is the longest a route
	// allows, not the daemons' 60 s default; the other bounds are the same as every daemon's.
	srv := daemon.NewServer(g.Handler(), daemon.ServerConfig{WriteTimeout: g.cfg.ShutdownTimeout + g.longestBudget()})
	srv.ErrorLog = slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	g.log.Info("gateway serving", "listen", ln.Addr().String(), "routes", len(g.table.Load().routes))
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		errc <- serveErr
	}
	g.draining.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && serveErr == nil {
		serveErr = err
	}
	if err := <-errc; serveErr == nil && !errors.Is(err, http.ErrServerClosed) {
		serveErr = err
	}
	return serveErr
}

// Close flushes Sentry and releases idle upstream connections. Run calls it;
// embedders that serve Handler themselves call it on shutdown.
func (g *Gateway) Close() {
	g.closeOnce.Do(func() {
		g.draining.Store(true)
		if g.sentry != nil {
			g.sentry.Flush(5 * time.Second)
			g.sentry.Close()
		}
		if g.ownsTransport != nil {
			g.ownsTransport.CloseIdleConnections()
		}
		g.healthTransport.CloseIdleConnections()
	})
}
