// Package daemon is the one shape every Mercury daemon has, so `mercury COMMAND` and
// `mercury up` build and run them the same way:
//
//   - a component is built by its package's New(Config), whose Config embeds Telemetry and
//     is checked (and defaulted) by its Validate method;
//   - Run(ctx) works until ctx ends, then drains, commits and returns nil (an error only when
//     the component failed);
//   - Ready reports whether it can do its job now (its inputs and stores answer);
//   - Routes mounts its own HTTP endpoints (an API, an admin page) on a mux.
//
// Run starts a set of components in one Group, serves their routes with /metrics, /healthz
// and /readyz on one listener with full timeouts, and stops everything on the first failure.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Component is one long-running part of a daemon.
type Component interface {
	// Run works until ctx ends, then drains and commits what it holds and returns nil.
	Run(ctx context.Context) error
	// Ready is nil when the component can do its job; otherwise it says why not.
	Ready() error
	// Routes mounts the component's own endpoints (not /metrics, /healthz, /readyz).
	Routes(mux *http.ServeMux)
}

// Telemetry is what a component reports through. Components in one process share it.
type Telemetry struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
}

// NewTelemetry is a logger and a registry with the Go and process collectors, for one process.
func NewTelemetry(log *slog.Logger) Telemetry {
	if log == nil {
		log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return Telemetry{Logger: log, Registry: reg}
}

// Defaults fills what is unset: the default logger, a private registry.
func (t *Telemetry) Defaults() {
	if t.Logger == nil {
		t.Logger = slog.Default()
	}
	if t.Registry == nil {
		t.Registry = prometheus.NewRegistry()
	}
}

// Register registers every collector, naming the first that fails.
func (t Telemetry) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := t.Registry.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

// Handler serves routes plus /metrics (from reg), /healthz (the process answers) and /readyz
// (every check nil; 503 naming the first that is not).
func Handler(reg prometheus.Gatherer, routes func(*http.ServeMux), ready ...func() error) http.Handler {
	mux := http.NewServeMux()
	if routes != nil {
		routes(mux)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, r := range ready {
			if err := r(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}

// ServerConfig bounds what one client may cost a server. Zero fields take the defaults.
type ServerConfig struct {
	ReadHeaderTimeout time.Duration // default 5 s
	ReadTimeout       time.Duration // whole request, body included; default 30 s
	WriteTimeout      time.Duration // whole response; default 60 s
	IdleTimeout       time.Duration // keep-alive; default 120 s
	MaxHeaderBytes    int           // default 64 KiB
}

// NewServer is an http.Server with every timeout set: a slow or stalled client holds a
// connection for a bounded time, and a huge header is refused (431).
func NewServer(h http.Handler, c ServerConfig) *http.Server {
	or := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	maxHeader := c.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = 64 << 10
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: or(c.ReadHeaderTimeout, 5*time.Second),
		ReadTimeout:       or(c.ReadTimeout, 30*time.Second),
		WriteTimeout:      or(c.WriteTimeout, 60*time.Second),
		IdleTimeout:       or(c.IdleTimeout, 120*time.Second),
		MaxHeaderBytes:    maxHeader,
	}
}

// Listener is a bound address waiting to be served, so the address (port 0 picks one) is
// known before anything runs.
type Listener struct {
	ln net.Listener
}

// Listen binds addr.
func Listen(addr string) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Listener{ln: ln}, nil
}

// Addr is the bound address, host:port.
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// URL is http://Addr.
func (l *Listener) URL() string { return "http://" + l.Addr() }

// Serve serves h with full timeouts until ctx ends, then shuts down gracefully (in-flight
// requests get up to 5 s). It returns nil after a shutdown, the error if serving failed.
func (l *Listener) Serve(ctx context.Context, h http.Handler, c ServerConfig) error {
	srv := NewServer(h, c)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l.ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close releases the address when it will not be served.
func (l *Listener) Close() error { return l.ln.Close() }

// Group runs functions together: the first to fail cancels the others' context, and Wait
// returns that failure (nil when all ended cleanly after ctx ended).
type Group struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// NewGroup derives the group's context from ctx.
func NewGroup(ctx context.Context) *Group {
	g := &Group{}
	g.ctx, g.cancel = context.WithCancelCause(ctx)
	return g
}

// Context ends when the parent's does or a member fails.
func (g *Group) Context() context.Context { return g.ctx }

// Go runs fn(ctx) as a member named name. A member that returns before the group's context
// ends has stopped the daemon's work: an error or not, the others are stopped too.
func (g *Group) Go(name string, fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := fn(g.ctx)
		switch {
		case err == nil && g.ctx.Err() == nil:
			err = errors.New("stopped on its own")
		case errors.Is(err, context.Canceled) && g.ctx.Err() != nil:
			err = nil // stopped because the group was
		}
		if err != nil {
			g.fail(fmt.Errorf("%s: %w", name, err))
		}
	}()
}

func (g *Group) fail(err error) {
	g.once.Do(func() {
		g.err = err
		g.cancel(err)
	})
}

// Stop cancels every member.
func (g *Group) Stop() { g.cancel(nil) }

// Wait waits for every member and returns the first failure.
func (g *Group) Wait() error {
	g.wg.Wait()
	g.cancel(nil)
	return g.err
}

// Options is one daemon process: its components, their shared telemetry and where to serve.
type Options struct {
	Name       string
	Telemetry  Telemetry
	Listener   *Listener // nil: no HTTP (the components' routes are not served)
	Server     ServerConfig
	Components []Component
	// Ready are extra readiness checks beside the components' own (a store's health).
	Ready []func() error
}

// Run runs the components and their HTTP endpoints until ctx ends or one of them fails; it
// returns nil after a clean shutdown (ctx ended, every component drained).
func Run(ctx context.Context, o Options) error {
	log := o.Telemetry.Logger
	if log == nil {
		log = slog.Default()
	}
	g := NewGroup(ctx)
	ready := append([]func() error(nil), o.Ready...)
	for _, c := range o.Components {
		ready = append(ready, c.Ready)
	}
	for i, c := range o.Components {
		g.Go(fmt.Sprintf("%s component %d (%T)", o.Name, i, c), c.Run)
	}
	if o.Listener != nil {
		h := Handler(o.Telemetry.Registry, func(mux *http.ServeMux) {
			for _, c := range o.Components {
				c.Routes(mux)
			}
		}, ready...)
		log.Info(o.Name+": listening", "addr", o.Listener.Addr())
		g.Go(o.Name+" http", func(ctx context.Context) error { return o.Listener.Serve(ctx, h, o.Server) })
	}
	err := g.Wait()
	if err != nil {
		log.Error(o.Name+": stopped", "err", err)
	}
	return err
}

// Task is a component that is only a loop (retention, a follower): always ready, no routes.
type Task func(ctx context.Context) error

func (t Task) Run(ctx context.Context) error { return t(ctx) }
func (Task) Ready() error                    { return nil }
func (Task) Routes(*http.ServeMux)           {}
