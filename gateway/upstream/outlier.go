package upstream

import (
	"errors"
	"math"
	"time"
)

// Outlier configures passive outlier ejection (Envoy's outlier detection):
// an instance is taken out of the balancer after Consecutive5xx failures in a
// row, or when, over one Interval with at least SuccessRateVolume requests,
// its success rate falls below mean − StdevFactor·stdev of the instances
// with that much traffic (at least SuccessRateMinHosts of them; with n such
// instances one outlier lies at most √(n−1) deviations out, so the default
// factor 1.9 singles one out only from 5 instances on). An ejected
// instance comes back after BaseEjection × the times it was ejected (at most
// MaxEjection). No more than MaxEjectionPercent of the instances are out at
// once (at least one, never all), so one bad instance cannot throttle the
// route and a bad day cannot empty it.
type Outlier struct {
	Consecutive5xx      int64         `yaml:"consecutive_5xx"`        // default 5
	Interval            time.Duration `yaml:"interval"`               // default 10s
	BaseEjection        time.Duration `yaml:"base_ejection"`          // default 30s
	MaxEjection         time.Duration `yaml:"max_ejection"`           // default 300s
	MaxEjectionPercent  float64       `yaml:"max_ejection_percent"`   // default 10
	SuccessRateMinHosts int           `yaml:"success_rate_min_hosts"` // default 3
	SuccessRateVolume   int64         `yaml:"success_rate_volume"`    // default 100
	StdevFactor         float64       `yaml:"stdev_factor"`           // default 1.9
}

func (o *Outlier) defaults() error {
	if o.Consecutive5xx == 0 {
		o.Consecutive5xx = 5
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.BaseEjection == 0 {
		o.BaseEjection = 30 * time.Second
	}
	if o.MaxEjection == 0 {
		o.MaxEjection = 300 * time.Second
	}
	if o.MaxEjectionPercent == 0 {
		o.MaxEjectionPercent = 10
	}
	if o.SuccessRateMinHosts == 0 {
		o.SuccessRateMinHosts = 3
	}
	if o.SuccessRateVolume == 0 {
		o.SuccessRateVolume = 100
	}
	if o.StdevFactor == 0 {
		o.StdevFactor = 1.9
	}
	if o.Consecutive5xx < 1 || o.Interval < 0 || o.BaseEjection < 0 || o.MaxEjection < o.BaseEjection ||
		o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 || o.SuccessRateMinHosts < 1 ||
		o.SuccessRateVolume < 1 || o.StdevFactor < 0 {
		return errors.New("upstream: outlier settings must be positive, max_ejection ≥ base_ejection, max_ejection_percent in [0,100]")
	}
	return nil
}

// maxEjectable is how many of n instances may be out at once.
func (o *Outlier) maxEjectable(n int) int {
	if n < 2 {
		return 0
	}
	return min(max(1, int(o.MaxEjectionPercent*float64(n)/100)), n-1)
}

// Report records the outcome of one request to the instance: failed is a 5xx
// that is not an overload signal, a timeout or a connection error. It costs
// two atomic adds; an ejection takes the pool's lock.
func (i *Instance) Report(failed bool) {
	p := i.pool
	if p.cfg.Outlier == nil {
		return
	}
	i.total.Add(1)
	if !failed {
		i.ok.Add(1)
		if i.consecutive.Load() != 0 {
			i.consecutive.Store(0)
		}
		return
	}
	if i.consecutive.Add(1) >= p.cfg.Outlier.Consecutive5xx {
		p.eject(i, "consecutive_5xx")
	}
}

// Ejected reports whether outlier detection has taken the instance out.
func (i *Instance) Ejected() bool { return i.ejected.Load() }

func (p *Pool) eject(in *Instance, reason string) {
	p.mu.Lock()
	if in.ejected.Load() || p.ejected >= p.cfg.Outlier.maxEjectable(len(p.instances)) {
		p.mu.Unlock()
		return
	}
	p.ejected++
	p.anyEjected.Store(true)
	in.ejected.Store(true)
	in.ejections++
	in.ejectedAt = p.clock.Now()
	in.consecutive.Store(0)
	p.mu.Unlock()
	if p.cfg.OnEject != nil {
		p.cfg.OnEject(in.URL.String(), true, reason)
	}
}

// Sweep is one outlier-detection interval: it returns instances whose
// ejection time is up, ejects success-rate outliers, and starts the next
// interval's counts. Run calls it every Interval.
func (p *Pool) Sweep() {
	o := p.cfg.Outlier
	if o == nil {
		return
	}
	now := p.clock.Now()
	type change struct {
		in     *Instance
		reason string
	}
	var back, out []change
	p.mu.Lock()
	for _, in := range p.instances {
		if in.ejected.Load() && now-in.ejectedAt >= min(int64(o.BaseEjection)*int64(in.ejections), int64(o.MaxEjection)) {
			in.ejected.Store(false)
			p.ejected--
			back = append(back, change{in, "ejection_ended"})
		}
	}
	// Success rate of the instances with enough traffic this interval.
	var rates []float64
	var judged []*Instance
	for _, in := range p.instances {
		total, ok := in.total.Swap(0), in.ok.Swap(0)
		if in.ejected.Load() || total < o.SuccessRateVolume {
			continue
		}
		rates = append(rates, float64(ok)/float64(total))
		judged = append(judged, in)
	}
	if len(judged) >= o.SuccessRateMinHosts {
		mean, stdev := meanStdev(rates)
		limit := mean - o.StdevFactor*stdev
		for k, in := range judged {
			if rates[k] < limit && p.ejected < o.maxEjectable(len(p.instances)) {
				p.ejected++
				in.ejected.Store(true)
				in.ejections++
				in.ejectedAt = now
				out = append(out, change{in, "success_rate"})
			}
		}
	}
	p.anyEjected.Store(p.ejected > 0)
	p.mu.Unlock()
	if p.cfg.OnEject != nil {
		for _, c := range back {
			p.cfg.OnEject(c.in.URL.String(), false, c.reason)
		}
		for _, c := range out {
			p.cfg.OnEject(c.in.URL.String(), true, c.reason)
		}
	}
}

func meanStdev(xs []float64) (mean, stdev float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		stdev += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(stdev / float64(len(xs)))
}
