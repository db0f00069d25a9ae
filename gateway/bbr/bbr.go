// Package bbr is the adaptive limiter: it sheds only when the CPU is past
// its threshold AND more requests are in flight than the pipe can hold.
//
// By Little's law the in-flight count a server sustains at its best is
// maxPass × minRT: the most requests completed in one bucket (scaled to per
// second) times the lowest average latency seen in any bucket of the rolling
// window. Above that, extra requests only queue. As in Kratos BBR the current,
// still-filling bucket is left out of both estimates, which are recomputed
// once per bucket rather than per request.
package bbr

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/gateway/cpu"
	"github.com/mercury-apm/mercury/gateway/internal/token"
	"github.com/mercury-apm/mercury/internal/clock"
	"github.com/mercury-apm/mercury/internal/window"
)

// ErrLimited is returned by Allow when the request is shed.
var ErrLimited = errors.New("bbr: overloaded")

// Config of a BBR limiter.
type Config struct {
	Window       time.Duration // default 10s
	Buckets      int           // default 100
	CPUThreshold float64       // in [0,1], default 0.8
	// CoolOff keeps checking in-flight for this long after a drop even if the
	// smoothed CPU fell below the threshold, so shedding does not flap while
	// the CPU average catches up. Default 1s.
	CoolOff time.Duration
	CPU     cpu.Source // required
	Clock   clock.Clock
}

type bucket struct {
	pass       int64
	rtSum, rtN int64
}

// Limiter is safe for concurrent use.
type Limiter struct {
	cfg    Config
	clock  clock.Clock
	perSec float64 // buckets per second
	tokens *token.Pool

	mu          sync.Mutex
	win         *window.Window[bucket]
	inFlight    int64
	epoch       int64 // epoch the cached estimates belong to
	maxPass     int64
	minRT       int64 // ns
	maxInFlight int64
	prevDrop    int64 // time of the last drop; 0 = none in cool-off
}

// New validates c and returns a limiter.
func New(c Config) (*Limiter, error) {
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.Buckets == 0 {
		c.Buckets = 100
	}
	if c.CPUThreshold == 0 {
		c.CPUThreshold = 0.8
	}
	if c.CoolOff == 0 {
		c.CoolOff = time.Second
	}
	switch {
	case c.CPU == nil:
		return nil, errors.New("bbr: CPU source required")
	case window.Check(c.Window, c.Buckets) != nil:
		return nil, fmt.Errorf("bbr: %w", window.Check(c.Window, c.Buckets))
	case c.CPUThreshold < 0 || c.CPUThreshold > 1:
		return nil, errors.New("bbr: cpu threshold must be in [0,1]")
	}
	width := int64(c.Window) / int64(c.Buckets)
	l := &Limiter{cfg: c, clock: clock.Or(c.Clock), perSec: float64(time.Second) / float64(width),
		win: window.New[bucket](c.Buckets, width), epoch: -1}
	l.tokens = token.New(l.finish)
	return l, nil
}

// refresh recomputes the estimates over the completed buckets when a new
// bucket started. Caller holds mu and has advanced the window.
func (l *Limiter) refresh() {
	e := l.win.Last()
	if e == l.epoch {
		return
	}
	l.epoch = e
	var maxPass int64
	minRT := int64(math.MaxInt64)
	for i, b := range l.win.Buckets() {
		if l.win.Current(i) {
			continue
		}
		maxPass = max(maxPass, b.pass)
		if b.rtN > 0 {
			minRT = min(minRT, b.rtSum/b.rtN)
		}
	}
	if maxPass == 0 {
		maxPass = 1
	}
	if minRT == math.MaxInt64 {
		minRT = int64(time.Millisecond)
	}
	l.maxPass, l.minRT = maxPass, minRT
	l.maxInFlight = max(1, int64(math.Floor(float64(maxPass)*l.perSec*float64(minRT)/float64(time.Second)+0.5)))
}

func (l *Limiter) shouldDrop(now int64) bool {
	over := l.inFlight > l.maxInFlight
	if l.cfg.CPU.Usage() < l.cfg.CPUThreshold {
		if l.prevDrop == 0 {
			return false
		}
		if now-l.prevDrop <= int64(l.cfg.CoolOff) {
			return over
		}
		l.prevDrop = 0
		return false
	}
	if over {
		l.prevDrop = now
	}
	return over
}

// Allow admits or sheds one request; done must be called exactly once.
func (l *Limiter) Allow() (func(error), error) {
	now := l.clock.Now()
	l.mu.Lock()
	l.win.Advance(now)
	l.refresh()
	if l.shouldDrop(now) {
		l.mu.Unlock()
		return nil, ErrLimited
	}
	l.inFlight++
	l.mu.Unlock()
	return l.tokens.Get(now), nil
}

func (l *Limiter) finish(start int64, _ error) {
	now := l.clock.Now()
	l.mu.Lock()
	l.inFlight--
	b := l.win.Advance(now)
	b.pass++
	b.rtSum += now - start
	b.rtN++
	l.mu.Unlock()
}

// Load is in-flight over the sustainable in-flight while the CPU is past
// its threshold, else 0: the overload degree tiered shedding acts on.
func (l *Limiter) Load() float64 {
	if l.cfg.CPU.Usage() < l.cfg.CPUThreshold {
		return 0
	}
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.win.Advance(now)
	l.refresh()
	return float64(l.inFlight) / float64(l.maxInFlight)
}

// Stats is a snapshot for the admin API.
type Stats struct {
	CPU         float64 `json:"cpu"`
	InFlight    int64   `json:"in_flight"`
	MaxPass     int64   `json:"max_pass_per_bucket"`
	MinRTMillis float64 `json:"min_rt_ms"`
	MaxInFlight int64   `json:"max_in_flight"`
}

// Stats returns the current figures.
func (l *Limiter) Stats() Stats {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.win.Advance(now)
	l.refresh()
	return Stats{CPU: l.cfg.CPU.Usage(), InFlight: l.inFlight, MaxPass: l.maxPass,
		MinRTMillis: float64(l.minRT) / 1e6, MaxInFlight: l.maxInFlight}
}
