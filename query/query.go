// Package query is the query service: one HTTP API made of rooms, one per resource (traces,
// agents, and whatever a deployment adds: metrics, alerts), plus the web UI. The rooms live
// in subpackages and share query/api's plumbing; this package wires them into one daemon
// component.
package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/query/agents"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/query/audit"
	"github.com/mercury-apm/mercury/query/jaeger"
	"github.com/mercury-apm/mercury/query/metrics"
	"github.com/mercury-apm/mercury/query/prom"
	"github.com/mercury-apm/mercury/query/traces"
	"github.com/mercury-apm/mercury/query/ui"
	"github.com/mercury-apm/mercury/reconcile"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// Room is one resource's endpoints.
type Room interface {
	Register(rt *api.Router)
}

// Config wires the query service.
type Config struct {
	daemon.Telemetry
	// Bus is where heartbeats are read for the agents registry; no brokers: no registry feed.
	Bus    bus.Config
	Traces *tracestore.Store
	// AdminToken guards write endpoints (Authorization: Bearer <token>). Empty disables them.
	AdminToken string
	// AgentConfigPath persists the agent configuration ("": memory only).
	AgentConfigPath string
	// Metrics, when set, mounts the metrics room and the Prometheus API over it.
	Metrics metricstore.Store
	// Rooms are mounted beside the built-in ones (traces, agents, Jaeger's API, metrics).
	Rooms []Room
	// Alerts tells the domain registry each domain's alert strategy and what fires there.
	Alerts agents.AlertState
}

// Validate fills the defaults and checks what is required.
func (c *Config) Validate() error {
	if c.Traces == nil {
		return errors.New("query: Traces store is required")
	}
	c.Telemetry.Defaults()
	return nil
}

// Service is the query daemon component.
type Service struct {
	cfg      Config
	mux      *http.ServeMux
	agents   *agents.Room
	follower *agents.Follower
}

var _ daemon.Component = (*Service)(nil)

// New opens the agent configuration, builds every room and the heartbeats follower.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	configs, err := agents.OpenConfigs(cfg.AgentConfigPath)
	if err != nil {
		return nil, err
	}
	registry := agents.NewRegistry(10000)
	registry.OnDomain = configs.SeenDomain
	s := &Service{cfg: cfg, mux: http.NewServeMux(), agents: &agents.Room{Registry: registry, Configs: configs, Alerts: cfg.Alerts}}
	rt, err := api.NewRouter(s.mux, cfg.Registry, cfg.Logger, cfg.AdminToken)
	if err != nil {
		return nil, fmt.Errorf("query: metrics: %w", err)
	}
	undecodable := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mercury_query_undecodable_rows_total",
		Help: "Stored spans skipped because they did not decode."}, func() float64 { return float64(cfg.Traces.Undecodable()) })
	if err := cfg.Register(undecodable); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	rooms := []Room{&traces.Room{Store: cfg.Traces}, s.agents, &jaeger.Room{Store: cfg.Traces, Logger: cfg.Logger},
		&audit.Room{Config: reconcile.Config{Bus: cfg.Bus, Traces: cfg.Traces.Index, Metrics: cfg.Metrics}}}
	if cfg.Metrics != nil {
		rooms = append(rooms, &metrics.Room{Store: cfg.Metrics}, &prom.Room{Store: cfg.Metrics, Logger: cfg.Logger})
	}
	rooms = append(rooms, cfg.Rooms...)
	for _, r := range rooms {
		r.Register(rt)
	}
	s.mux.Handle("GET /", ui.Handler())
	if len(cfg.Bus.Brokers) > 0 {
		if s.follower, err = agents.NewFollower(cfg.Bus, s.agents.Registry, cfg.Logger); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Registry is the agents registry (for tests and tools in the same process).
func (s *Service) Registry() *agents.Registry { return s.agents.Registry }

// Routes mounts the API and the UI.
func (s *Service) Routes(mux *http.ServeMux) { mux.Handle("/", s.mux) }

// Ready is nil while the heartbeats follower is healthy.
func (s *Service) Ready() error {
	if s.follower != nil {
		if err := s.follower.Err(); err != nil {
			return fmt.Errorf("query: heartbeats: %w", err)
		}
	}
	return nil
}

// Run follows heartbeats until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if s.follower == nil {
		<-ctx.Done()
		return nil
	}
	return s.follower.Run(ctx)
}

// Handler is the whole service with /metrics, /healthz and /readyz, for tests and callers that
// serve it themselves.
func (s *Service) Handler() http.Handler { return daemon.Handler(s.cfg.Registry, s.Routes, s.Ready) }
