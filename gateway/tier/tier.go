// Package tier sheds requests by service tier under overload: tier 4 first,
// then 3, then 2, tier 1 last. Each tier has an admission threshold on one
// gateway-wide load signal; as the load rises it crosses tier 4's threshold
// first and tier 1's last.
package tier

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
)

// ErrShed is returned by Allow when the tier is being shed.
var ErrShed = errors.New("tier: shed under overload")

// Signal is an extra load source in the same units as the in-flight ratio:
// 1 means at capacity. BBR's Load fits.
type Signal func() float64

// Config of a shedder.
type Config struct {
	// MaxInFlight is the gateway-wide capacity; the load is in-flight /
	// MaxInFlight. 0 leaves only the Signals.
	MaxInFlight int64
	Signals     []Signal
	// Thresholds[i] is the load at and above which tier i+1 is shed.
	// Default {1, 0.9, 0.8, 0.7}; must not increase from tier 1 to tier 4.
	Thresholds [4]float64
	// InFlight is the counter of admitted requests; nil gives the shedder
	// its own. A shedder rebuilt by a config reload takes the previous
	// one's, so the requests admitted before the reload still count and
	// their done still decrements what is measured.
	InFlight *atomic.Int64
}

// Shedder is safe for concurrent use.
type Shedder struct {
	cfg      Config
	inFlight *atomic.Int64
	done     func(error)
}

// New validates c and returns a shedder.
func New(c Config) (*Shedder, error) {
	if c.Thresholds == [4]float64{} {
		c.Thresholds = [4]float64{1, 0.9, 0.8, 0.7}
	}
	if c.MaxInFlight < 0 {
		return nil, errors.New("tier: max in-flight must be ≥ 0")
	}
	for i := 1; i < 4; i++ {
		if c.Thresholds[i] > c.Thresholds[i-1] || c.Thresholds[i] <= 0 {
			return nil, fmt.Errorf("tier: thresholds must be positive and non-increasing from tier 1 to 4, got %v", c.Thresholds)
		}
	}
	s := &Shedder{cfg: c, inFlight: c.InFlight}
	if s.inFlight == nil {
		s.inFlight = new(atomic.Int64)
	}
	s.done = s.finish
	return s, nil
}

// Load is the current load signal.
func (s *Shedder) Load() float64 {
	var l float64
	if s.cfg.MaxInFlight > 0 {
		l = float64(s.inFlight.Load()) / float64(s.cfg.MaxInFlight)
	}
	for _, sig := range s.cfg.Signals {
		l = math.Max(l, sig())
	}
	return l
}

// Allow admits or sheds a request of the given tier (1–4; anything else is
// treated as 4). done must be called exactly once.
func (s *Shedder) Allow(tier int) (func(error), error) {
	if tier < 1 || tier > 4 {
		tier = 4
	}
	if s.Load() >= s.cfg.Thresholds[tier-1] {
		return nil, ErrShed
	}
	s.inFlight.Add(1)
	return s.done, nil
}

func (s *Shedder) finish(error) { s.inFlight.Add(-1) }

// InFlight is the number of admitted requests not yet done.
func (s *Shedder) InFlight() int64 { return s.inFlight.Load() }

// Counter is the in-flight counter, for Config.InFlight of a successor.
func (s *Shedder) Counter() *atomic.Int64 { return s.inFlight }
