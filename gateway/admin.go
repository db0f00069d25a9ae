package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"

	"github.com/mercury-apm/mercury/gateway/bbr"
	"github.com/mercury-apm/mercury/gateway/degrade"
	"github.com/mercury-apm/mercury/gateway/ratelimit"
	"github.com/mercury-apm/mercury/gateway/retry"
	"github.com/mercury-apm/mercury/gateway/upstream"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/prometheus/client_golang/prometheus"
)

// maxAdminBody bounds admin request bodies.
const maxAdminBody = 64 << 10

// RouteStatus is what GET /admin/routes/{name} reports.
type RouteStatus struct {
	Name        string   `json:"name"`
	Prefix      string   `json:"prefix"`
	Service     string   `json:"service"`
	Tier        int      `json:"tier"`
	Middlewares []string `json:"middlewares"`
	Breaker     *struct {
		State           string   `json:"state"`
		DropProbability *float64 `json:"drop_probability,omitempty"`
	} `json:"breaker,omitempty"`
	RetryWindow      *retry.Stats     `json:"retry_window,omitempty"`
	RetryEnabled     bool             `json:"retry_enabled"`
	Active           int64            `json:"active"` // requests in flight, what max_concurrent bounds
	RateLimit        *ratelimit.Stats `json:"ratelimit,omitempty"`
	BBR              *bbr.Stats       `json:"bbr,omitempty"`
	Degrade          *degrade.Status  `json:"degrade,omitempty"`
	TimeoutMillis    float64          `json:"timeout_ms"`
	EMALatencyMillis *float64         `json:"ema_latency_ms,omitempty"`
	HealthyLocal     int              `json:"healthy_local"`
	HealthyRemote    *int             `json:"healthy_remote,omitempty"`
	Instances        []InstanceStatus `json:"instances"`
}

// InstanceStatus is one upstream instance as the balancer sees it.
type InstanceStatus struct {
	URL      string `json:"url"`
	Region   string `json:"region"` // "local" or "remote"
	Healthy  bool   `json:"healthy"`
	Ejected  bool   `json:"ejected"` // by outlier detection
	InFlight int64  `json:"in_flight"`
}

func (r *route) status() RouteStatus {
	s := RouteStatus{Name: r.cfg.Name, Prefix: r.cfg.Prefix, Service: r.cfg.Service, Tier: r.cfg.Tier,
		RetryEnabled: r.retry.on && r.g.retries.Enabled(r.cfg.Service), Active: r.active.Load()}
	for _, mw := range allMiddlewares {
		if r.cfg.enabled(mw) {
			s.Middlewares = append(s.Middlewares, mw)
		}
	}
	if r.breaker != nil {
		s.Breaker = &struct {
			State           string   `json:"state"`
			DropProbability *float64 `json:"drop_probability,omitempty"`
		}{State: r.breaker.State().String()}
		if sre, ok := r.breaker.(interface{ DropProbability() float64 }); ok {
			p := sre.DropProbability()
			s.Breaker.DropProbability = &p
		}
	}
	if r.window != nil {
		w := r.window.Stats()
		s.RetryWindow = &w
	}
	if r.limiter != nil {
		l := r.limiter.Stats()
		s.RateLimit = &l
	}
	if r.bbr != nil {
		b := r.bbr.Stats()
		s.BBR = &b
	}
	if r.degrade != nil {
		d := r.degrade.Status()
		s.Degrade = &d
	}
	s.TimeoutMillis = float64(r.localTimeout.Microseconds()) / 1e3
	if r.dyn != nil {
		s.TimeoutMillis = float64(r.dyn.Timeout().Microseconds()) / 1e3
		ema := float64(r.dyn.Average().Microseconds()) / 1e3
		s.EMALatencyMillis = &ema
	}
	s.HealthyLocal = s.addInstances(UpstreamLocal, r.local)
	if r.remote != nil {
		n := s.addInstances(UpstreamRemote, r.remote)
		s.HealthyRemote = &n
	}
	return s
}

// addInstances lists pool's instances and returns how many are healthy.
func (s *RouteStatus) addInstances(region string, pool *upstream.Pool) (healthy int) {
	for _, in := range pool.Instances() {
		s.Instances = append(s.Instances, InstanceStatus{URL: in.URL.String(), Region: region,
			Healthy: in.Healthy(), Ejected: in.Ejected(), InFlight: in.InFlight()})
		if in.Healthy() {
			healthy++
		}
	}
	return healthy
}

// AdminHandler serves the admin API with /metrics, /healthz and /readyz, as `mercury
// gateway` serves it on the admin listener (daemon.Run mounts Routes and Ready the same way).
// Write endpoints need "Authorization: Bearer <admin token>".
func (g *Gateway) AdminHandler() http.Handler { return daemon.Handler(g.registry, g.Routes, g.Ready) }

// Registry holds the gateway's metrics (served at the admin listener's /metrics).
func (g *Gateway) Registry() *prometheus.Registry { return g.registry }

// Ready is an error once the gateway drains: load balancers stop sending before the proxy
// listener closes.
func (g *Gateway) Ready() error {
	if g.draining.Load() {
		return errors.New("gateway: draining")
	}
	return nil
}

// Routes mounts the admin API: routes, degrade and retry switches, plans, dye, chaos, and
// pprof behind the admin token.
func (g *Gateway) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/routes", func(w http.ResponseWriter, _ *http.Request) {
		t := g.table.Load()
		out := make([]RouteStatus, 0, len(t.order))
		for _, name := range t.order {
			out = append(out, t.byName[name].status())
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /admin/routes/{name}", func(w http.ResponseWriter, req *http.Request) {
		if r := g.routeParam(w, req); r != nil {
			writeJSON(w, http.StatusOK, r.status())
		}
	})
	mux.HandleFunc("PUT /admin/routes/{name}/degrade", g.authorized(func(w http.ResponseWriter, req *http.Request) {
		r := g.routeParam(w, req)
		if r == nil {
			return
		}
		if r.degrade == nil {
			httpError(w, http.StatusConflict, "route %q has no degrade middleware", r.cfg.Name)
			return
		}
		var set degrade.Setting
		if !readJSON(w, req, &set) {
			return
		}
		g.opsMu.Lock()
		defer g.opsMu.Unlock()
		if _, err := r.degrade.Apply(set); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if g.persist(w) {
			writeJSON(w, http.StatusOK, r.degrade.Status())
		}
	}))
	mux.HandleFunc("PUT /admin/retry", g.authorized(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Enabled *bool  `json:"enabled"`
			Service string `json:"service"`
		}
		if !readJSON(w, req, &body) {
			return
		}
		if body.Enabled == nil || (body.Service != "" && !namePattern.MatchString(body.Service)) {
			httpError(w, http.StatusBadRequest, "want {\"enabled\": bool, \"service\": optional name}")
			return
		}
		g.opsMu.Lock()
		defer g.opsMu.Unlock()
		if body.Service == "" {
			g.retries.SetGlobal(*body.Enabled)
		} else {
			g.retries.SetService(body.Service, *body.Enabled)
		}
		if g.persist(w) {
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	// Profiles show the code and its memory: only for the admin token.
	mux.HandleFunc("GET /debug/pprof/", g.authorized(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/cmdline", g.authorized(pprof.Cmdline))
	mux.HandleFunc("GET /debug/pprof/profile", g.authorized(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", g.authorized(pprof.Symbol))
	mux.HandleFunc("POST /debug/pprof/symbol", g.authorized(pprof.Symbol))
	mux.HandleFunc("GET /debug/pprof/trace", g.authorized(pprof.Trace))
	mux.HandleFunc("GET /admin/dye", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"enabled": !g.dyeOff.Load()})
	})
	mux.HandleFunc("PUT /admin/dye", g.authorized(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Enabled *bool `json:"enabled"`
		}
		if !readJSON(w, req, &body) {
			return
		}
		if body.Enabled == nil {
			httpError(w, http.StatusBadRequest, "want {\"enabled\": bool}")
			return
		}
		g.opsMu.Lock()
		defer g.opsMu.Unlock()
		g.dyeOff.Store(!*body.Enabled)
		if g.persist(w) {
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	mux.HandleFunc("GET /admin/chaos", func(w http.ResponseWriter, _ *http.Request) {
		if st, ok := g.chaosStatus(); ok {
			writeJSON(w, http.StatusOK, st)
			return
		}
		httpError(w, http.StatusNotFound, "no experiment has run")
	})
	mux.HandleFunc("PUT /admin/chaos", g.authorized(func(w http.ResponseWriter, req *http.Request) {
		var exp ChaosExperiment
		if !readJSON(w, req, &exp) {
			return
		}
		st, err := g.startChaos(exp)
		switch {
		case errors.Is(err, errChaosRunning):
			httpError(w, http.StatusConflict, "%v", err)
		case err != nil:
			httpError(w, http.StatusBadRequest, "%v", err)
		default:
			writeJSON(w, http.StatusOK, st)
		}
	}))
	mux.HandleFunc("DELETE /admin/chaos", g.authorized(func(w http.ResponseWriter, _ *http.Request) {
		c := g.chaos.Load()
		if c == nil || !g.endChaos(c, "stopped") {
			httpError(w, http.StatusConflict, "no experiment is running")
			return
		}
		st, _ := g.chaosStatus()
		writeJSON(w, http.StatusOK, st)
	}))
	plan := func(apply bool) http.HandlerFunc {
		return g.authorized(func(w http.ResponseWriter, req *http.Request) {
			name := req.PathValue("name")
			if !namePattern.MatchString(name) {
				httpError(w, http.StatusBadRequest, "invalid plan name")
				return
			}
			g.opsMu.Lock()
			defer g.opsMu.Unlock()
			p, ok := g.table.Load().plans[name]
			if !ok {
				httpError(w, http.StatusNotFound, "no plan %q", name)
				return
			}
			var err error
			if apply {
				err = g.applyPlan(p)
			} else {
				err = g.revertPlan(p)
			}
			if err != nil {
				httpError(w, http.StatusConflict, "%v", err)
				return
			}
			if g.persist(w) {
				writeJSON(w, http.StatusOK, map[string]any{"plan": name, "applied": p.saved != nil})
			}
		})
	}
	mux.HandleFunc("GET /admin/plans", func(w http.ResponseWriter, _ *http.Request) {
		type planStatus struct {
			Name     string     `json:"name"`
			Applied  bool       `json:"applied"`
			Replaced *planState `json:"replaced,omitempty"` // what revert puts back
		}
		g.opsMu.Lock()
		t := g.table.Load()
		out := make([]planStatus, 0, len(t.plans))
		for name, p := range t.plans {
			out = append(out, planStatus{Name: name, Applied: p.saved != nil, Replaced: p.saved})
		}
		g.opsMu.Unlock()
		slices.SortFunc(out, func(a, b planStatus) int { return strings.Compare(a.Name, b.Name) })
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /admin/plans/{name}/apply", plan(true))
	mux.HandleFunc("POST /admin/plans/{name}/revert", plan(false))
}

// routeParam resolves {name}: 400 for a malformed name, 404 for an unknown one.
func (g *Gateway) routeParam(w http.ResponseWriter, req *http.Request) *route {
	name := req.PathValue("name")
	if !namePattern.MatchString(name) {
		httpError(w, http.StatusBadRequest, "invalid route name")
		return nil
	}
	r := g.route(name)
	if r == nil {
		httpError(w, http.StatusNotFound, "no route %q", name)
		return nil
	}
	return r
}

func (g *Gateway) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if g.cfg.AdminToken == "" {
			httpError(w, http.StatusForbidden, "admin writes are disabled: no admin token configured")
			return
		}
		got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(g.cfg.AdminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			httpError(w, http.StatusUnauthorized, "bad or missing admin token")
			return
		}
		h(w, req)
	}
}

// readJSON decodes exactly one JSON object with known fields; anything else
// is a 400.
func readJSON(w http.ResponseWriter, req *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after JSON object")
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "invalid JSON body: %v", err)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}
