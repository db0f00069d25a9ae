package gateway

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/mercury-apm/mercury/gateway/degrade"
)

// PlanConfig is a named set of operator settings applied and reverted in one
// call: degradation switches, retry switches, rate limits, tiers shed
// outright and the share of requests traced.
type PlanConfig struct {
	Name   string                     `yaml:"name"`
	Routes map[string]degrade.Setting `yaml:"routes"` // route → degradation switch
	Retry  *PlanRetry                 `yaml:"retry"`
	Limits map[string]int64           `yaml:"limits"` // route → rate limit per its window
	// ShedTiers are refused outright (503) while the plan is applied, load
	// or not, e.g. [4, 3] for a festival.
	ShedTiers []int `yaml:"shed_tiers"`
	// SampleRate is the share of requests the Observer sees (spans); the
	// metrics still count every request.
	SampleRate *float64 `yaml:"sample_rate"`
}

// PlanRetry sets retry switches: the global one and per service.
type PlanRetry struct {
	Enabled  *bool           `yaml:"enabled"`
	Services map[string]bool `yaml:"services"`
}

func (p *PlanConfig) validate(routes map[string]*RouteConfig) error {
	for name, set := range p.Routes {
		if routes[name] == nil {
			return fmt.Errorf("unknown route %q", name)
		}
		if set.Fallback != nil {
			fb := *set.Fallback
			if err := fb.Validate(); err != nil {
				return fmt.Errorf("route %q: %w", name, err)
			}
		}
	}
	for name, limit := range p.Limits {
		rc := routes[name]
		switch {
		case rc == nil:
			return fmt.Errorf("limits: unknown route %q", name)
		case !rc.enabled(MWRateLimit):
			return fmt.Errorf("limits: route %q has no ratelimit middleware", name)
		case limit < 1:
			return fmt.Errorf("limits: route %q: limit must be ≥ 1", name)
		}
	}
	for _, t := range p.ShedTiers {
		if t < 1 || t > 4 {
			return fmt.Errorf("shed_tiers: tier %d is not 1–4", t)
		}
	}
	if r := p.SampleRate; r != nil && (*r < 0 || *r > 1 || math.IsNaN(*r)) {
		return errors.New("sample_rate must be in [0,1]")
	}
	if p.Retry != nil {
		for svc := range p.Retry.Services {
			if !namePattern.MatchString(svc) {
				return fmt.Errorf("retry: invalid service name %q", svc)
			}
		}
	}
	return nil
}

// plan is a PlanConfig and, while applied, what it replaced. The gateway's
// opsMu guards saved.
type plan struct {
	cfg   PlanConfig
	saved *planState
}

// planState is what an applied plan replaced, restored by revert and
// persisted with the gateway's state.
type planState struct {
	Routes        map[string]degrade.Setting `json:"routes,omitempty"`
	RetryGlobal   *bool                      `json:"retry_global,omitempty"`
	RetryServices map[string]bool            `json:"retry_services,omitempty"`
	Limits        map[string]int64           `json:"limits,omitempty"`
	ShedTiers     map[int]bool               `json:"shed_tiers,omitempty"`
	SampleRate    *float64                   `json:"sample_rate,omitempty"`
}

// applyPlan applies p, saving what it replaces; caller holds opsMu. Every
// route is resolved first, so a plan naming a route the running config lacks
// changes nothing.
func (g *Gateway) applyPlan(p *plan) error {
	if p.saved != nil {
		return fmt.Errorf("plan %q is already applied", p.cfg.Name)
	}
	t := g.table.Load()
	for name := range p.cfg.Routes {
		if r := t.byName[name]; r == nil || r.degrade == nil {
			return fmt.Errorf("plan %q: route %q has no degrade switch", p.cfg.Name, name)
		}
	}
	for name := range p.cfg.Limits {
		if r := t.byName[name]; r == nil || r.limiter == nil {
			return fmt.Errorf("plan %q: route %q has no rate limiter", p.cfg.Name, name)
		}
	}
	s := &planState{}
	if len(p.cfg.Routes) > 0 {
		s.Routes = map[string]degrade.Setting{}
	}
	for name, set := range p.cfg.Routes {
		prev, err := t.byName[name].degrade.Apply(set)
		if err != nil { // validated with the config; kept for safety
			return err
		}
		s.Routes[name] = prev
	}
	if rr := p.cfg.Retry; rr != nil {
		if rr.Enabled != nil {
			prev := g.retries.Global()
			s.RetryGlobal = &prev
			g.retries.SetGlobal(*rr.Enabled)
		}
		if len(rr.Services) > 0 {
			s.RetryServices = map[string]bool{}
		}
		for svc, on := range rr.Services {
			s.RetryServices[svc] = g.retries.Service(svc)
			g.retries.SetService(svc, on)
		}
	}
	if len(p.cfg.Limits) > 0 {
		s.Limits = map[string]int64{}
	}
	for name, limit := range p.cfg.Limits {
		prev, _ := t.byName[name].limiter.SetLimit(limit) // validated ≥ 1
		s.Limits[name] = prev
	}
	if len(p.cfg.ShedTiers) > 0 {
		s.ShedTiers = map[int]bool{}
	}
	for _, tier := range p.cfg.ShedTiers {
		s.ShedTiers[tier] = g.shedTiers[tier].Swap(true)
	}
	if p.cfg.SampleRate != nil {
		prev := g.sampleRate()
		s.SampleRate = &prev
		g.setSampleRate(*p.cfg.SampleRate)
	}
	p.saved = s
	return nil
}

// revertPlan restores what applyPlan saved; caller holds opsMu. A route
// that is gone since (a reload) is skipped.
func (g *Gateway) revertPlan(p *plan) error {
	s := p.saved
	if s == nil {
		return fmt.Errorf("plan %q is not applied", p.cfg.Name)
	}
	g.restorePlanState(s)
	p.saved = nil
	return nil
}

func (g *Gateway) restorePlanState(s *planState) {
	t := g.table.Load()
	for name, prev := range s.Routes {
		if r := t.byName[name]; r != nil && r.degrade != nil {
			_, _ = r.degrade.Apply(prev) // prev came from the switch itself
		}
	}
	if s.RetryGlobal != nil {
		g.retries.SetGlobal(*s.RetryGlobal)
	}
	for svc, on := range s.RetryServices {
		g.retries.SetService(svc, on)
	}
	for name, prev := range s.Limits {
		if r := t.byName[name]; r != nil && r.limiter != nil {
			_, _ = r.limiter.SetLimit(prev)
		}
	}
	for tier, was := range s.ShedTiers {
		g.shedTiers[tier].Store(was)
	}
	if s.SampleRate != nil {
		g.setSampleRate(*s.SampleRate)
	}
}

// sampleRate is the share of requests the Observer sees.
func (g *Gateway) sampleRate() float64 { return math.Float64frombits(g.sampling.Load()) }

func (g *Gateway) setSampleRate(r float64) { g.sampling.Store(math.Float64bits(r)) }

// observed decides whether the Observer sees one request: one atomic load
// while everything is traced.
func (g *Gateway) observed() bool {
	bits := g.sampling.Load()
	return bits == oneBits || rand.Float64() < math.Float64frombits(bits)
}

var oneBits = math.Float64bits(1)
