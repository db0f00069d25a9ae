// Package upstream is a route's set of instances in one region: balancing
// (round-robin or least-loaded) over the healthy ones, active health checks
// that take failing instances out and put recovered ones back, and passive
// outlier ejection driven by the outcomes of real requests.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

// ErrNoHealthy is returned by Pick when every instance is down.
var ErrNoHealthy = errors.New("upstream: no healthy instance")

// Balance strategy.
type Balance string

// Strategies.
const (
	RoundRobin  Balance = "round_robin"
	LeastLoaded Balance = "least_loaded"
)

// HealthCheck configures active checks; an empty Path disables them.
type HealthCheck struct {
	Path      string        `yaml:"path"`
	Interval  time.Duration `yaml:"interval"`   // default 2s
	Timeout   time.Duration `yaml:"timeout"`    // default 1s
	FailAfter int           `yaml:"fail_after"` // consecutive failures to go down, default 2
	PassAfter int           `yaml:"pass_after"` // consecutive passes to come back, default 2
}

// Config of a pool.
type Config struct {
	Instances []string
	Balance   Balance
	Health    HealthCheck
	Client    *http.Client // for health checks (each probe has its own Timeout); default http.DefaultClient
	// OnHealth is called when an instance changes health.
	OnHealth func(instance string, healthy bool)
	// Outlier enables passive outlier ejection; nil leaves it off.
	Outlier *Outlier
	// OnEject is called when outlier detection ejects an instance or lets
	// it back, with the reason (consecutive_5xx, success_rate,
	// ejection_ended).
	OnEject func(instance string, ejected bool, reason string)
	Clock   clock.Clock // for ejection times; default real
}

// Instance is one upstream server.
type Instance struct {
	URL      *url.URL
	pool     *Pool
	healthy  atomic.Bool
	inFlight atomic.Int64
	// Only the checker goroutine touches these.
	fails, passes int

	// Outlier detection: counts of the current interval, the failure
	// streak, and (under the pool's mu) the ejection record.
	ejected              atomic.Bool
	consecutive          atomic.Int64
	total, ok            atomic.Int64
	ejectedAt, ejections int64
}

// Healthy reports the instance's last known health.
func (i *Instance) Healthy() bool { return i.healthy.Load() }

// InFlight is the number of requests picked and not yet done.
func (i *Instance) InFlight() int64 { return i.inFlight.Load() }

// Done releases a request picked with Pick.
func (i *Instance) Done() { i.inFlight.Add(-1) }

// Pool is safe for concurrent use.
type Pool struct {
	cfg        Config
	clock      clock.Clock
	instances  []*Instance
	next       atomic.Uint64
	anyEjected atomic.Bool // Pick looks at ejections only while there are some

	mu      sync.Mutex
	ejected int
}

// New parses the instance URLs and returns a pool with every instance
// healthy until a check says otherwise.
func New(c Config) (*Pool, error) {
	if len(c.Instances) == 0 {
		return nil, errors.New("upstream: no instances")
	}
	switch c.Balance {
	case "":
		c.Balance = RoundRobin
	case RoundRobin, LeastLoaded:
	default:
		return nil, fmt.Errorf("upstream: unknown balance %q (want round_robin or least_loaded)", c.Balance)
	}
	h := &c.Health
	if h.Interval == 0 {
		h.Interval = 2 * time.Second
	}
	if h.Timeout == 0 {
		h.Timeout = time.Second
	}
	if h.FailAfter == 0 {
		h.FailAfter = 2
	}
	if h.PassAfter == 0 {
		h.PassAfter = 2
	}
	if h.Interval < 0 || h.Timeout < 0 || h.FailAfter < 1 || h.PassAfter < 1 {
		return nil, errors.New("upstream: health check interval, timeout and thresholds must be positive")
	}
	if c.Client == nil {
		c.Client = http.DefaultClient
	}
	if c.Outlier != nil {
		o := *c.Outlier
		if err := o.defaults(); err != nil {
			return nil, err
		}
		c.Outlier = &o
	}
	p := &Pool{cfg: c, clock: clock.Or(c.Clock)}
	for _, raw := range c.Instances {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("upstream: instance %q is not an http(s) URL", raw)
		}
		in := &Instance{URL: u, pool: p}
		in.healthy.Store(true)
		p.instances = append(p.instances, in)
	}
	return p, nil
}

// Instances returns the pool's instances.
func (p *Pool) Instances() []*Instance { return p.instances }

// Pick chooses a healthy instance and counts the request on it; call
// Instance.Done when the request ends.
func (p *Pool) Pick() (*Instance, error) { return p.PickOther(nil) }

// PickOther is Pick avoiding instance not (nil: none), for a retry that must
// go to another instance. Ejected instances are picked only when no other
// healthy one is left.
func (p *Pool) PickOther(not *Instance) (*Instance, error) {
	in := p.pick(not, p.anyEjected.Load())
	if in == nil && p.anyEjected.Load() {
		in = p.pick(not, false)
	}
	if in == nil {
		return nil, ErrNoHealthy
	}
	in.inFlight.Add(1)
	return in, nil
}

func (p *Pool) pick(not *Instance, skipEjected bool) *Instance {
	n := uint64(len(p.instances))
	start := p.next.Add(1)
	var best *Instance
	for k := range n {
		in := p.instances[(start+k)%n]
		if !in.healthy.Load() || in == not || skipEjected && in.ejected.Load() {
			continue
		}
		if p.cfg.Balance == RoundRobin {
			// Skip the counter past the unhealthy ones too, or the instance
			// after a dead one would take its share as well.
			p.next.CompareAndSwap(start, start+k)
			return in
		}
		if best == nil || in.inFlight.Load() < best.inFlight.Load() {
			best = in
		}
	}
	return best
}

// Run health-checks every instance each health interval and sweeps outlier
// detection every outlier interval until ctx ends. It returns at once when
// both are off.
func (p *Pool) Run(ctx context.Context) {
	var health, sweep <-chan time.Time
	if p.cfg.Health.Path != "" {
		t := time.NewTicker(p.cfg.Health.Interval)
		defer t.Stop()
		health = t.C
		p.CheckOnce(ctx)
	}
	if p.cfg.Outlier != nil {
		t := time.NewTicker(p.cfg.Outlier.Interval)
		defer t.Stop()
		sweep = t.C
	}
	if health == nil && sweep == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-health:
			p.CheckOnce(ctx)
		case <-sweep:
			p.Sweep()
		}
	}
}

// CheckOnce probes every instance concurrently and applies the thresholds.
func (p *Pool) CheckOnce(ctx context.Context) {
	var wg sync.WaitGroup
	for _, in := range p.instances {
		wg.Go(func() { p.record(in, p.probe(ctx, in)) })
	}
	wg.Wait()
}

func (p *Pool) probe(ctx context.Context, in *Instance) bool {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Health.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL.JoinPath(p.cfg.Health.Path).String(), nil)
	if err != nil {
		return false
	}
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

func (p *Pool) record(in *Instance, ok bool) {
	h := p.cfg.Health
	changed := false
	if ok {
		in.fails = 0
		in.passes++
		if !in.healthy.Load() && in.passes >= h.PassAfter {
			in.healthy.Store(true)
			changed = true
		}
	} else {
		in.passes = 0
		in.fails++
		if in.healthy.Load() && in.fails >= h.FailAfter {
			in.healthy.Store(false)
			changed = true
		}
	}
	if changed && p.cfg.OnHealth != nil {
		p.cfg.OnHealth(in.URL.String(), in.healthy.Load())
	}
}
