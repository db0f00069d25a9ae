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
	Alerts   AlertState       // nil: no alerting known
	Now      func() time.Time // nil: time.Now
	log      func(msg string, args ...any)
}

// Register mounts the agents list, the agent configuration (GET; PUT and the levels for
// admins) and the domain registry.
func (a *Room) Register(rt *api.Router) {
	a.log = rt.Info
	rt.Handle("GET /api/v1/agents", a.list)
	rt.Handle("GET /api/v1/agent-config", a.getConfig)
	rt.Handle("GET /api/v1/agent-config/levels", a.levels)
	rt.Handle("PUT /api/v1/agent-config", rt.Admin(a.putConfig))
	rt.Handle("GET /api/v1/domains", a.domains)
	rt.Handle("PUT /api/v1/domains/{domain}", rt.Admin(a.putDomain))
}

func (a *Room) list(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	p := api.NewParams(r.URL.Query(), "lookback")
	lookback := p.Duration("lookback", true)
	if err := p.Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	var since time.Time
	if lookback > 0 {
		since = now.Add(-lookback)
	}
	return a.Registry.View(since, now), http.StatusOK, nil
}

func (a *Room) getConfig(w http.ResponseWriter, r *http.Request) (any, int, error) {
	// Agents send their domain too: the configuration is the default, then the domain's,
	// then the service's.
	p := api.NewParams(r.URL.Query(), "service", "domain")
	service, domain := p.String("service"), p.String("domain")
	if !schemas.ValidName(service) {
		p.Bad("service: want 1-64 letters, digits, '-', '_' or '.'")
	}
	if domain != "" && !schemas.ValidName(domain) {
		p.Bad("domain: want 1-64 letters, digits, '-', '_' or '.'")
	}
	if err := p.Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	rc, _ := a.Configs.Get(domain, service)
	etag := `"` + rc.Version + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == etag {
		return nil, http.StatusNotModified, nil
	}
	return rc, http.StatusOK, nil
}

// level reads which stored level a request names: exactly one of service (or * for the
// default), domain or group.
func level(p *api.Params) Level {
	var named []Level
	for _, kind := range []string{"service", "domain", "group"} {
		if v := p.String(kind); v != "" {
			named = append(named, Level{Kind: kind, Name: v})
		}
	}
	if len(named) != 1 {
		p.Bad("name exactly one of service (* for the default), domain or group")
		return Level{}
	}
	l := named[0]
	if l.Kind == "service" && l.Name == DefaultConfigKey {
		return Level{Kind: "default"}
	}
	if !schemas.ValidName(l.Name) {
		p.Bad("%s: want 1-64 letters, digits, '-', '_' or '.'", l.Kind)
	}
	return l
}

func (a *Room) putConfig(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	p := api.NewParams(r.URL.Query(), "service", "domain", "group")
	l := level(p)
	if err := p.Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	var rc schemas.AgentConfig
	if err := api.DecodeJSON(r, 64<<10, &rc); err != nil {
		return nil, http.StatusBadRequest, err
	}
	saved, err := a.Configs.Put(l, rc)
	if err != nil {
		if errors.Is(err, errInvalidConfig) {
			return nil, http.StatusBadRequest, err
		}
		return nil, http.StatusInternalServerError, fmt.Errorf("saving the agent config: %w", err)
	}
	a.log("agent config changed", "level", l.Kind, "name", l.Name, "version", saved.Version)
	return saved, http.StatusOK, nil
}

// Levels answers GET /api/v1/agent-config/levels: every stored level, for the editor.
type Levels struct {
	Default  *schemas.AgentConfig           `json:"default"`
	Groups   map[string]schemas.AgentConfig `json:"groups"`
	Domains  map[string]schemas.AgentConfig `json:"domains"`
	Services map[string]schemas.AgentConfig `json:"services"`
}

func (a *Room) levels(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	if err := api.NewParams(r.URL.Query()).Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	var l Levels
	l.Default, l.Groups, l.Domains, l.Services = a.Configs.All()
	return l, http.StatusOK, nil
}
