package agents

import (
	"sort"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// Agent is what the last heartbeat of one agent process said.
type Agent struct {
	Domain        string           `json:"domain"`
	Service       string           `json:"service"`
	Host          string           `json:"host"`
	PID           int32            `json:"pid"`
	AgentVersion  string           `json:"agent_version"`
	ConfigVersion string           `json:"config_version"`
	Started       time.Time        `json:"started"`
	LastSeen      time.Time        `json:"last_seen"`
	Dropped       int64            `json:"dropped"` // all reasons
	Stats         map[string]int64 `json:"stats"`
	// Live: a heartbeat came within three heartbeat intervals (the gap between its last two,
	// at least DefaultHeartbeat). A dead agent stays listed, marked, until it is forgotten.
	Live bool `json:"live"`

	interval time.Duration
}

// DefaultHeartbeat is the agents' default heartbeat interval, the least the registry assumes.
const DefaultHeartbeat = 10 * time.Second

// Registry keeps the latest heartbeat per agent process, fed from mercury.heartbeats.
type Registry struct {
	// OnDomain, when set, hears every heartbeat's domain and time (the domain registry
	// records first sightings).
	OnDomain func(domain string, at time.Time)

	mu  sync.RWMutex
	all map[agentKey]*Agent
	max int
}

type agentKey struct {
	service, host string
	pid           int32
}

// NewRegistry holds at most max agents (the oldest are forgotten first).
func NewRegistry(max int) *Registry {
	return &Registry{all: map[agentKey]*Agent{}, max: max}
}

// Observe records a heartbeat. Older heartbeats than the one held are ignored, so replays and
// reordering do nothing.
func (r *Registry) Observe(hb *schemas.Heartbeat) {
	k := agentKey{hb.Service, hb.Host, hb.PID}
	seen := time.Unix(0, hb.TimeUnixNano).UTC()
	if r.OnDomain != nil {
		r.OnDomain(hb.Domain, seen)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok := r.all[k]
	if ok && !seen.After(old.LastSeen) {
		return
	}
	interval := DefaultHeartbeat
	if ok {
		interval = max(interval, seen.Sub(old.LastSeen))
	}
	var dropped int64
	for k, v := range hb.Stats {
		if len(k) > 8 && k[:8] == "dropped_" {
			dropped += v
		}
	}
	r.all[k] = &Agent{Domain: hb.Domain, Service: hb.Service, Host: hb.Host, PID: hb.PID, AgentVersion: hb.AgentVersion,
		ConfigVersion: hb.ConfigVersion, Started: time.Unix(0, hb.StartedUnixNano).UTC(), LastSeen: seen,
		Dropped: dropped, Stats: hb.Stats, interval: interval}
	if len(r.all) > r.max {
		var oldest agentKey
		first := true
		for k, a := range r.all {
			if first || a.LastSeen.Before(r.all[oldest].LastSeen) {
				oldest, first = k, false
			}
		}
		delete(r.all, oldest)
	}
}

// View answers GET /api/v1/agents: every agent, and which versions run in which domain.
type View struct {
	Agents []Agent `json:"agents"`
	// Versions counts live agents per domain and version.
	Versions map[string]map[string]int `json:"versions"`
}

// View lists agents seen since `since` (zero: all) as of now, sorted by domain, service, host.
func (r *Registry) View(since, now time.Time) View {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v := View{Agents: []Agent{}, Versions: map[string]map[string]int{}}
	for _, a := range r.all {
		if a.LastSeen.Before(since) {
			continue
		}
		c := *a
		c.Live = now.Sub(a.LastSeen) <= 3*a.interval
		v.Agents = append(v.Agents, c)
		if !c.Live {
			continue
		}
		if v.Versions[a.Domain] == nil {
			v.Versions[a.Domain] = map[string]int{}
		}
		v.Versions[a.Domain][a.AgentVersion]++
	}
	sort.Slice(v.Agents, func(i, j int) bool {
		x, y := v.Agents[i], v.Agents[j]
		if x.Domain != y.Domain {
			return x.Domain < y.Domain
		}
		if x.Service != y.Service {
			return x.Service < y.Service
		}
		return x.Host < y.Host
	})
	return v
}
