package agents

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/schemas"
)

// AlertState tells the domain registry how a domain is alerted on; the alert room provides
// it. Without one, every domain shows no strategy and its status comes from its agents.
type AlertState interface {
	// DomainAlerts is the strategy assigned to the domain ("" for none) and the most severe
	// level firing there now ("", "warning" or "alarm").
	DomainAlerts(domain string) (strategy, firing string)
}

// Domain is one entry of the domain registry.
type Domain struct {
	Domain        string         `json:"domain"`
	FirstSeen     time.Time      `json:"first_seen"`
	Owner         string         `json:"owner,omitempty"`
	LiveAgents    int            `json:"live_agents"`
	GoneAgents    int            `json:"gone_agents"`
	Versions      map[string]int `json:"versions"`
	Dropped       int64          `json:"dropped"`
	ConfigVersion string         `json:"config_version"`
	AlertStrategy string         `json:"alert_strategy,omitempty"`
	// Status: abnormal (no live agent, or an alarm firing), warning (agents gone or
	// dropping spans, or a warning firing), normal otherwise.
	Status string `json:"status"`
}

// Domains answers GET /api/v1/domains.
type Domains struct {
	Domains []Domain `json:"domains"`
}

func (a *Room) domains(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	if err := api.NewParams(r.URL.Query()).Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	byName := map[string]*Domain{}
	get := func(name string) *Domain {
		d := byName[name]
		if d == nil {
			d = &Domain{Domain: name, Versions: map[string]int{}}
			byName[name] = d
		}
		return d
	}
	for name, info := range a.Configs.Domains() {
		d := get(name)
		d.FirstSeen, d.Owner = info.FirstSeen, info.Owner
	}
	for _, ag := range a.Registry.View(time.Time{}, now).Agents {
		d := get(ag.Domain)
		if ag.Live {
			d.LiveAgents++
			d.Versions[ag.AgentVersion]++
			d.Dropped += ag.Dropped
		} else {
			d.GoneAgents++
		}
	}
	out := Domains{Domains: []Domain{}}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		d := byName[name]
		rc, _ := a.Configs.Get(name, "")
		d.ConfigVersion = rc.Version
		firing := ""
		if a.Alerts != nil {
			d.AlertStrategy, firing = a.Alerts.DomainAlerts(name)
		}
		switch {
		case d.LiveAgents == 0 || firing == "alarm":
			d.Status = "abnormal"
		case d.GoneAgents > 0 || d.Dropped > 0 || firing == "warning":
			d.Status = "warning"
		default:
			d.Status = "normal"
		}
		out.Domains = append(out.Domains, *d)
	}
	return out, http.StatusOK, nil
}

func (a *Room) putDomain(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	if err := api.NewParams(r.URL.Query()).Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	name := r.PathValue("domain")
	if !schemas.ValidName(name) {
		return nil, http.StatusBadRequest, errors.New("domain: want 1-64 letters, digits, '-', '_' or '.'")
	}
	var body struct {
		Owner string `json:"owner"`
	}
	if err := api.DecodeJSON(r, 4<<10, &body); err != nil {
		return nil, http.StatusBadRequest, err
	}
	if len(body.Owner) > 200 {
		return nil, http.StatusBadRequest, errors.New("owner: at most 200 bytes")
	}
	info, err := a.Configs.SetOwner(name, body.Owner)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	return info, http.StatusOK, nil
}
