// Package timeout computes the EMA dynamic timeout of the QQ Music gateway
// (after jiamao/ema_time): the average must stay within bounds, not every
// single request. The better the average, the more slack one slow request
// gets; the worse the average, the closer the timeout falls to Thwm.
//
// With r = 2/(N+1), every finished request updates
//
//	EMA ← r·latency + (1−r)·EMA
//
// and the dynamic timeout is
//
//	Tdto = Tmax                                          if EMA ≤ Tavg
//	Tdto = Thwm                                          if EMA ≥ Thwm
//	Tdto = Thwm + (Thwm−EMA)/(Thwm−Tavg) · (Tmax−Thwm)   otherwise
//
// Thwm is the high-water mark: the timeout that keeps the service healthy in
// the worst case. Tmax is the most elasticity ever granted; Tavg is the
// latency at or below which the full Tmax is granted.
package timeout

import (
	"errors"
	"math"
	"sync/atomic"
	"time"
)

// Config of a dynamic timeout.
type Config struct {
	Thwm time.Duration // required
	Tmax time.Duration // required, ≥ Thwm
	Tavg time.Duration // default Thwm/4
	N    int           // smoothing span, default 50
}

// EMA is safe for concurrent use and lock-free.
type EMA struct {
	thwm, tmax, tavg float64 // ns
	r                float64
	ema              atomic.Uint64 // float64 bits, ns
}

// New validates c and returns the estimator. The EMA starts at Tavg, so a
// fresh route gets Tmax until real latencies arrive.
func New(c Config) (*EMA, error) {
	if c.Tavg == 0 {
		c.Tavg = c.Thwm / 4
	}
	if c.N == 0 {
		c.N = 50
	}
	switch {
	case c.Thwm <= 0 || c.Tmax < c.Thwm:
		return nil, errors.New("timeout: need 0 < thwm ≤ tmax")
	case c.Tavg <= 0 || c.Tavg >= c.Thwm:
		return nil, errors.New("timeout: need 0 < tavg < thwm")
	case c.N < 1:
		return nil, errors.New("timeout: n must be ≥ 1")
	}
	e := &EMA{thwm: float64(c.Thwm), tmax: float64(c.Tmax), tavg: float64(c.Tavg), r: 2 / float64(c.N+1)}
	e.ema.Store(math.Float64bits(e.tavg))
	return e, nil
}

// Observe folds one latency into the average.
func (e *EMA) Observe(d time.Duration) {
	for {
		old := e.ema.Load()
		next := e.r*float64(d) + (1-e.r)*math.Float64frombits(old)
		if e.ema.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// Average is the current EMA latency.
func (e *EMA) Average() time.Duration { return time.Duration(math.Float64frombits(e.ema.Load())) }

// Timeout is the dynamic timeout Tdto for the next request.
func (e *EMA) Timeout() time.Duration {
	ema := math.Float64frombits(e.ema.Load())
	switch {
	case ema <= e.tavg:
		return time.Duration(e.tmax)
	case ema >= e.thwm:
		return time.Duration(e.thwm)
	}
	return time.Duration(e.thwm + (e.thwm-ema)/(e.thwm-e.tavg)*(e.tmax-e.thwm))
}
