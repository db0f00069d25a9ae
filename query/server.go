// Package query serves Mercury's HTTP API: trace search and call trees, the agents registry,
// and the agents' dynamic configuration.
package query

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/tracestore"
)

// Config wires the API to its data.
type Config struct {
	Store        *tracestore.Store
	Agents       *Agents
	AgentConfigs *AgentConfigs
	// AdminToken guards write endpoints (Authorization: Bearer <token>). Empty disables them.
	AdminToken string
	Logger     *slog.Logger
	Registry   prometheus.Registerer // nil: a private registry
	// Ready reports whether the daemon's inputs are up (nil: always ready).
	Ready func() error
	now   func() time.Time
}

// Server is the query API.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	gatherer prometheus.Gatherer
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New builds the API.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("query: Config.Store is nil")
	}
	if cfg.Agents == nil {
		cfg.Agents = NewAgents(10000)
	}
	if cfg.AgentConfigs == nil {
		cfg.AgentConfigs, _ = OpenAgentConfigs("")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	reg := cfg.Registry
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, s.gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		s.gatherer = g
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mercury_query_requests_total", Help: "API requests by route and status code."}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mercury_query_request_seconds", Help: "API latency by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"route"})
	undecodable := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mercury_query_undecodable_rows_total",
		Help: "Stored spans skipped because they did not decode."}, func() float64 { return float64(tracestore.UndecodableRows.Load()) })
	for _, c := range []prometheus.Collector{s.requests, s.latency, undecodable} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("query: metrics: %w", err)
		}
	}
	s.handle("GET /api/v1/traces", s.searchTraces)
	s.handle("GET /api/v1/traces/{id}", s.getTrace)
	s.handle("GET /api/v1/agents", s.listAgents)
	s.handle("GET /api/v1/agent-config", s.getAgentConfig)
	s.handle("PUT /api/v1/agent-config", s.admin(s.putAgentConfig))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if s.gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	}
	s.mux.Handle("GET /", uiHandler())
	return s, nil
}

// Handler is the whole API.
func (s *Server) Handler() http.Handler { return s.mux }

// apiError is every error body: {"error": "..."}.
type apiError struct {
	Error string `json:"error"`
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) (any, int, error)

// handle adapts a handler returning (body, status, error), recording metrics. Errors become
// JSON messages; a 500 never carries internals beyond the error text.
func (s *Server) handle(pattern string, h handlerFunc) {
	route := pattern[strings.IndexByte(pattern, ' ')+1:]
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		body, code, err := h(w, r)
		if err != nil {
			if code < 400 {
				code = http.StatusInternalServerError
			}
			if code >= 500 {
				s.cfg.Logger.Error("query API", "route", route, "err", err)
			}
			body = apiError{err.Error()}
		}
		var buf bytes.Buffer
		if body != nil {
			// Encode before the status line: a value JSON cannot hold (a NaN from a hostile
			// span, say) must become a 500 with a message, not a 200 with half a body.
			if jerr := json.NewEncoder(&buf).Encode(body); jerr != nil {
				s.cfg.Logger.Error("query API: encode", "route", route, "err", jerr)
				code, buf = http.StatusInternalServerError, bytes.Buffer{}
				json.NewEncoder(&buf).Encode(apiError{"response not representable as JSON: " + jerr.Error()})
			}
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(code)
		w.Write(buf.Bytes())
		s.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		s.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

func (s *Server) admin(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		if s.cfg.AdminToken == "" {
			return nil, http.StatusForbidden, errors.New("admin endpoints are disabled: start the query service with an admin token")
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.AdminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mercury"`)
			return nil, http.StatusUnauthorized, errors.New("admin token required")
		}
		return h(w, r)
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	io.WriteString(w, "ready\n")
}

// TraceSummary is one search result.
type TraceSummary struct {
	TraceID       string            `json:"trace_id"`
	RootService   string            `json:"root_service"`
	RootOperation string            `json:"root_operation"`
	Start         time.Time         `json:"start"`
	DurationNano  int64             `json:"duration_nano"`
	SpanCount     int               `json:"span_count"`
	ErrorCount    int               `json:"error_count"`
	Services      []string          `json:"services"`
	BusinessKeys  map[string]string `json:"business_keys,omitempty"`
	Dyed          bool              `json:"dyed,omitempty"`
}

// SearchResult answers GET /api/v1/traces.
type SearchResult struct {
	Traces []TraceSummary `json:"traces"`
}

func (s *Server) searchTraces(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	q, err := parseSearch(r.URL.Query(), s.cfg.now())
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	found, err := s.cfg.Store.FindTraces(ctx, q)
	if err != nil {
		return nil, storeStatus(err), err
	}
	res := SearchResult{Traces: make([]TraceSummary, 0, len(found))}
	for _, t := range found {
		res.Traces = append(res.Traces, TraceSummary{
			TraceID: t.TraceID.String(), RootService: t.RootService, RootOperation: t.RootOperation, Start: t.Start.UTC(),
			DurationNano: int64(t.Duration), SpanCount: t.SpanCount, ErrorCount: t.ErrorCount, Services: t.Services,
			BusinessKeys: kvMap(t.BusinessKeys), Dyed: t.Dyed,
		})
	}
	return res, http.StatusOK, nil
}

func (s *Server) getTrace(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	id, err := schemas.ParseTraceID(strings.ToLower(r.PathValue("id")))
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	spans, err := s.cfg.Store.Rows.GetTrace(ctx, id)
	if err != nil {
		return nil, storeStatus(err), err
	}
	return buildTree(id, spans), http.StatusOK, nil
}

func storeStatus(err error) int {
	switch {
	case errors.Is(err, tracestore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, tracestore.ErrInvalidQuery):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded), tracestore.Retryable(err):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *Server) listAgents(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	var since time.Time
	if v := r.URL.Query().Get("lookback"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, http.StatusBadRequest, fmt.Errorf("lookback %q: want a positive duration", v)
		}
		since = s.cfg.now().Add(-d)
	}
	return s.cfg.Agents.View(since), http.StatusOK, nil
}

func (s *Server) getAgentConfig(w http.ResponseWriter, r *http.Request) (any, int, error) {
	service := r.URL.Query().Get("service")
	if !agent.ValidName(service) {
		return nil, http.StatusBadRequest, errors.New("service: want 1-64 letters, digits, '-', '_' or '.'")
	}
	rc, ok := s.cfg.AgentConfigs.Get(service)
	if !ok {
		rc = agent.RemoteConfig{Version: "0"}
	}
	etag := `"` + rc.Version + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == etag {
		return nil, http.StatusNotModified, nil
	}
	return rc, http.StatusOK, nil
}

func (s *Server) putAgentConfig(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	service := r.URL.Query().Get("service")
	if service != DefaultConfigKey && !agent.ValidName(service) {
		return nil, http.StatusBadRequest, errors.New("service: want a service name or * for the default")
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	var rc agent.RemoteConfig
	if err := dec.Decode(&rc); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("body: %w", err)
	}
	saved, err := s.cfg.AgentConfigs.Put(service, rc)
	if err != nil {
		if errors.Is(err, errInvalidConfig) {
			return nil, http.StatusBadRequest, err
		}
		return nil, http.StatusInternalServerError, err
	}
	s.cfg.Logger.Info("agent config changed", "service", service, "version", saved.Version)
	return saved, http.StatusOK, nil
}
