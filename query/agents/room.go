// Package agents is the query service's agent room: the registry of agents fed from their
// heartbeats (versions per domain, drops, last seen) and the dynamic agent configuration
// they poll (sample rate, switches, kill switch), persisted to a file.
package agents

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/schemas"
)

// Room serves the agents and agent-config endpoints.
type Room struct {
	Registry *Registry
	Configs  *Configs
	Now      func() time.Time // nil: time.Now
	log      func(msg string, args ...any)
}

// Register mounts GET /api/v1/agents and GET/PUT (admin) /api/v1/agent-config.
func (a *Room) Register(rt *api.Router) {
	a.log = rt.Info
	rt.Handle("GET /api/v1/agents", a.list)
	rt.Handle("GET /api/v1/agent-config", a.getConfig)
	rt.Handle("PUT /api/v1/agent-config", rt.Admin(a.putConfig))
}

func (a *Room) list(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	p := api.NewParams(r.URL.Query(), "lookback")
	lookback := p.Duration("lookback", true)
	if err := p.Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	var since time.Time
	if lookback > 0 {
		now := time.Now
		if a.Now != nil {
			now = a.Now
		}
		since = now().Add(-lookback)
	}
	return a.Registry.View(since), http.StatusOK, nil
}

func (a *Room) getConfig(w http.ResponseWriter, r *http.Request) (any, int, error) {
	// Agents send their domain too; the configuration is kept per service.
	p := api.NewParams(r.URL.Query(), "service", "domain")
	service := p.String("service")
	if !schemas.ValidName(service) {
		p.Bad("service: want 1-64 letters, digits, '-', '_' or '.'")
	}
	if d := p.String("domain"); d != "" && !schemas.ValidName(d) {
		p.Bad("domain: want 1-64 letters, digits, '-', '_' or '.'")
	}
	if err := p.Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	rc, ok := a.Configs.Get(service)
	if !ok {
		rc = schemas.AgentConfig{Version: "0"}
	}
	etag := `"` + rc.Version + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == etag {
		return nil, http.StatusNotModified, nil
	}
	return rc, http.StatusOK, nil
}

func (a *Room) putConfig(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	p := api.NewParams(r.URL.Query(), "service")
	service := p.String("service")
	if service != DefaultConfigKey && !schemas.ValidName(service) {
		p.Bad("service: want a service name or * for the default")
	}
	if err := p.Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	var rc schemas.AgentConfig
	if err := api.DecodeJSON(r, 64<<10, &rc); err != nil {
		return nil, http.StatusBadRequest, err
	}
	saved, err := a.Configs.Put(service, rc)
	if err != nil {
		if errors.Is(err, errInvalidConfig) {
			return nil, http.StatusBadRequest, err
		}
		return nil, http.StatusInternalServerError, fmt.Errorf("saving the agent config: %w", err)
	}
	a.log("agent config changed", "service", service, "version", saved.Version)
	return saved, http.StatusOK, nil
}
