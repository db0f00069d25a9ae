package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/gateway/tier"
	"github.com/mercury-apm/mercury/gateway/upstream"
)

// routeTable is everything a config reload replaces at once.
type routeTable struct {
	routes []*route // longest prefix first
	order  []string // route names in config order, for the admin API
	byName map[string]*route
	plans  map[string]*plan
	tiers  *tier.Shedder
	fresh  []*route // routes built for this table (not carried over)
}

// route returns the named route of the current config, or nil.
func (g *Gateway) route(name string) *route { return g.table.Load().byName[name] }

// buildTable builds the routes, plans and tier shedder of cfg. Routes whose
// config is unchanged from old keep their objects, so their breakers,
// windows, caches and in-flight counts go on; the others start afresh
// (keeping an operator's manual degradation). Nothing is registered or
// started here.
func (g *Gateway) buildTable(cfg Config, old *routeTable) (*routeTable, error) {
	t := &routeTable{byName: map[string]*route{}, plans: map[string]*plan{}}
	for _, rc := range cfg.Routes {
		var r *route
		if old != nil {
			if o := old.byName[rc.Name]; o != nil && reflect.DeepEqual(o.cfg, rc) {
				r = o
			}
		}
		if r == nil {
			var err error
			if r, err = newRoute(g, rc); err != nil {
				return nil, err
			}
			r.m = g.metrics.forRoute(rc.Name)
			if o := old.get(rc.Name); o != nil && o.degrade != nil && r.degrade != nil {
				if st := o.degrade.Status(); st.Manual {
					_, _ = r.degrade.Apply(degradeSetting(st)) // from a valid switch
				}
			}
			t.fresh = append(t.fresh, r)
		}
		t.routes = append(t.routes, r)
		t.order = append(t.order, rc.Name)
		t.byName[rc.Name] = r
	}
	sort.SliceStable(t.routes, func(i, j int) bool { return len(t.routes[i].cfg.Prefix) > len(t.routes[j].cfg.Prefix) })
	var signals []tier.Signal
	for _, r := range t.routes {
		if r.bbr != nil {
			signals = append(signals, r.bbr.Load)
		}
	}
	tc := tier.Config{MaxInFlight: cfg.MaxInFlight, Signals: signals, Thresholds: cfg.TierThresholds}
	if old != nil {
		tc.InFlight = old.tiers.Counter() // requests admitted before the reload still count
	}
	var err error
	if t.tiers, err = tier.New(tc); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	for _, pc := range cfg.Plans {
		t.plans[pc.Name] = &plan{cfg: pc}
	}
	return t, nil
}

func (t *routeTable) get(name string) *route {
	if t == nil {
		return nil
	}
	return t.byName[name]
}

// register adds the scrape-time gauges of the table's fresh routes.
func (t *routeTable) register(reg prometheus.Registerer) {
	for _, r := range t.fresh {
		r.collectors = r.m.gauges(reg, r)
	}
}

// unregister removes the gauges of every route in the table.
func (t *routeTable) unregister(reg prometheus.Registerer) {
	for _, r := range t.routes {
		for _, c := range r.collectors {
			reg.Unregister(c)
		}
	}
}

// Reload replaces the routes, plans, max_in_flight and tier_thresholds with
// those of cfg without dropping a request: requests in flight finish on the
// routes they started on, new ones use the new table. Unchanged routes keep
// their state. Everything else must be as at New (restart to change it). A
// config that does not validate or build, or that would change or remove an
// applied plan or a route an applied plan changed, is refused and the
// running config stays.
func (g *Gateway) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cur := g.cfg
	cfg.Clock, cfg.CPUSource, cfg.Observer, cfg.Logger, cfg.Transport, cfg.Registry =
		cur.Clock, cur.CPUSource, cur.Observer, cur.Logger, cur.Transport, cur.Registry
	applyDefaults(&cfg)
	static, want := cfg, cur
	static.Routes, static.Plans, static.MaxInFlight, static.TierThresholds = nil, nil, 0, [4]float64{}
	want.Routes, want.Plans, want.MaxInFlight, want.TierThresholds = nil, nil, 0, [4]float64{}
	if !reflect.DeepEqual(static, want) {
		return errors.New("gateway: reload changes only routes, plans, max_in_flight and tier_thresholds; restart for the rest")
	}
	g.opsMu.Lock()
	defer g.opsMu.Unlock()
	old := g.table.Load()
	routes := map[string]*RouteConfig{}
	for i := range cfg.Routes {
		routes[cfg.Routes[i].Name] = &cfg.Routes[i]
	}
	for name, p := range old.plans {
		if p.saved == nil {
			continue
		}
		np := planByName(cfg.Plans, name)
		if np == nil || !reflect.DeepEqual(*np, p.cfg) {
			return fmt.Errorf("gateway: plan %q is applied: revert it before changing or removing it", name)
		}
		for rn := range p.saved.Routes {
			if o, n := old.byName[rn], routes[rn]; n == nil || !reflect.DeepEqual(o.cfg, *n) {
				return fmt.Errorf("gateway: route %q is set by applied plan %q: revert it before changing the route", rn, name)
			}
		}
		for rn := range p.saved.Limits {
			if o, n := old.byName[rn], routes[rn]; n == nil || !reflect.DeepEqual(o.cfg, *n) {
				return fmt.Errorf("gateway: route %q is set by applied plan %q: revert it before changing the route", rn, name)
			}
		}
	}
	t, err := g.buildTable(cfg, old)
	if err != nil {
		return err
	}
	for name, p := range old.plans {
		if p.saved != nil {
			t.plans[name] = p // with what it saved
		}
	}
	kept := map[*route]bool{}
	for _, r := range t.routes {
		kept[r] = true
	}
	var gone []*route
	for _, r := range old.routes {
		if !kept[r] {
			gone = append(gone, r)
			for _, c := range r.collectors {
				g.registry.Unregister(c)
			}
		}
	}
	t.register(g.registry)
	g.table.Store(t)
	g.loops.retire(gone)
	g.loops.add(t.fresh)
	g.log.Info("gateway config reloaded", "routes", len(t.routes), "rebuilt", len(t.fresh), "removed", len(gone))
	return nil
}

func planByName(plans []PlanConfig, name string) *PlanConfig {
	for i := range plans {
		if plans[i].Name == name {
			return &plans[i]
		}
	}
	return nil
}

// ReloadFile loads the config at path and reloads it (SIGHUP).
func (g *Gateway) ReloadFile(path string) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	return g.Reload(cfg)
}

// WatchConfig checks the file at path every interval and reloads it when its
// content changed, until ctx ends. A file that does not load or reload is
// logged and the running config kept; the next change is tried again.
func (g *Gateway) WatchConfig(ctx context.Context, path string, interval time.Duration) {
	w := newConfigWatch(g, path)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := w.check(); err != nil {
				g.log.Warn("config reload failed; keeping the running config", "path", path, "err", err)
			}
		}
	}
}

// configWatch remembers the content last seen, so an editor touching the
// file without changing it reloads nothing.
type configWatch struct {
	g    *Gateway
	path string
	sum  [sha256.Size]byte
}

func newConfigWatch(g *Gateway, path string) *configWatch {
	w := &configWatch{g: g, path: path}
	if b, err := os.ReadFile(path); err == nil {
		w.sum = sha256.Sum256(b)
	}
	return w
}

// check reloads the file if its content changed since the last check.
func (w *configWatch) check() (reloaded bool, err error) {
	b, err := os.ReadFile(w.path)
	if err != nil {
		return false, fmt.Errorf("gateway: %w", err)
	}
	sum := sha256.Sum256(b)
	if sum == w.sum {
		return false, nil
	}
	w.sum = sum // a bad version is reported once, not every interval
	cfg, err := ParseConfig(bytes.NewReader(b))
	if err != nil {
		return false, err
	}
	if err := w.g.Reload(cfg); err != nil {
		return false, err
	}
	return true, nil
}

// loops runs the routes' background loops (health checks, outlier sweeps)
// under the context Start was given; a reload adds the new routes' and
// stops the removed ones'.
type loops struct {
	mu  sync.Mutex
	ctx context.Context // nil before Start and once stopping
	wg  *sync.WaitGroup
}

// start runs the loops of the current table's routes; the table is read
// under mu, so a reload racing with Start neither misses nor doubles a
// route's loops.
func (l *loops) start(ctx context.Context, wg *sync.WaitGroup, current func() []*route) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ctx, l.wg = ctx, wg
	l.run(current())
}

func (l *loops) add(routes []*route) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.run(routes)
}

// run starts the loops of routes not yet running; caller holds mu.
func (l *loops) run(routes []*route) {
	if l.ctx == nil {
		return
	}
	for _, r := range routes {
		if r.stopLoops != nil {
			continue
		}
		ctx, cancel := context.WithCancel(l.ctx)
		r.stopLoops = cancel
		for _, p := range []*upstream.Pool{r.local, r.remote} {
			if p != nil {
				l.wg.Go(func() { p.Run(ctx) })
			}
		}
	}
}

func (l *loops) retire(routes []*route) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range routes {
		if r.stopLoops != nil {
			r.stopLoops()
		}
	}
}

// stop refuses further loops, so the WaitGroup sees no Add once Wait runs.
func (l *loops) stop() {
	l.mu.Lock()
	l.ctx = nil
	l.mu.Unlock()
}
