// Package rules evaluates metric rules over one-minute points: the value of a metric in a
// minute, baselines (the ratio to the same minute yesterday or last week), "for N
// consecutive minutes", rule groups (every condition must hold) and the two levels. It
// reads past minutes through History, a small interface the metric store implements;
// MemoryHistory serves tests and a deployment without one.
package rules

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// History answers for past minutes of a series.
type History interface {
	// Point is the series' point of the minute starting at minuteUnix (seconds); ok false
	// when the series had none (no traffic that minute).
	Point(ctx context.Context, seriesID string, minuteUnix int64) (p schemas.MetricPoint, ok bool, err error)
}

// Quantiles answers latency quantiles (nanoseconds) of one point's sketch.
type Quantiles interface {
	Quantile(q float64) float64
}

// QuantileFunc reads the quantiles of a point (its Sketch field).
type QuantileFunc func(p *schemas.MetricPoint) (Quantiles, error)

// ErrNoQuantiles: a p50/p90/p99 condition met a deployment that cannot read sketches.
var ErrNoQuantiles = fmt.Errorf("rules: no quantile reader configured")

// Value is metric m of point p: qps per second, latencies in milliseconds. Ratios and
// latencies of a minute without calls are NaN (no condition holds on them); counts are 0.
func Value(m string, p *schemas.MetricPoint, q QuantileFunc) (float64, error) {
	switch m {
	case "count":
		return p.Count, nil
	case "qps":
		return p.Count / 60, nil
	case "errors":
		return p.Errors, nil
	}
	if p.Count <= 0 {
		return math.NaN(), nil
	}
	switch m {
	case "error_rate":
		return p.Errors / p.Count, nil
	case "avg":
		return p.SumNano / p.Count / 1e6, nil
	case "p50", "p90", "p99":
		if q == nil {
			return math.NaN(), ErrNoQuantiles
		}
		qs, err := q(p)
		if err != nil {
			return math.NaN(), fmt.Errorf("rules: sketch of %s@%d: %w", p.SeriesID, p.MinuteUnix, err)
		}
		f := map[string]float64{"p50": .5, "p90": .9, "p99": .99}[m]
		return qs.Quantile(f) / 1e6, nil
	}
	return math.NaN(), fmt.Errorf("rules: unknown metric %q", m)
}

// Result is a rule's state at one minute.
type Result struct {
	Level     string  // "", warning or alarm
	Value     float64 // the first condition's value at the minute (a ratio for a baseline)
	Threshold float64 // and its threshold at Level
}

// Evaluator evaluates rules against a history.
type Evaluator struct {
	History   History
	Quantiles QuantileFunc
}

// Evaluate is rule r's level for series at minute at (minute start, unix seconds): the
// highest level at which every condition held in each of the r.For minutes ending with at.
// fresh, when its minute is in range, is used instead of the history's point for it (the
// point just consumed may not be in the store yet).
func (e *Evaluator) Evaluate(ctx context.Context, r *alertstore.Rule, seriesID string, at int64, fresh *schemas.MetricPoint) (Result, error) {
	n := max(r.For, 1)
	points := map[int64]*schemas.MetricPoint{}
	point := func(minute int64) (*schemas.MetricPoint, bool, error) {
		if p, ok := points[minute]; ok {
			return p, p != nil, nil
		}
		if fresh != nil && fresh.MinuteUnix == minute {
			points[minute] = fresh
			return fresh, true, nil
		}
		p, ok, err := e.History.Point(ctx, seriesID, minute)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			points[minute] = nil
			return nil, false, nil
		}
		points[minute] = &p
		return &p, true, nil
	}
	var first Result
	for _, level := range []string{alertstore.LevelAlarm, alertstore.LevelWarning} {
		held := true
		for k := 0; k < n && held; k++ {
			minute := at - int64(60*k)
			p, ok, err := point(minute)
			if err != nil {
				return Result{}, err
			}
			if !ok {
				p = &schemas.MetricPoint{SeriesID: seriesID, MinuteUnix: minute} // no calls that minute
			}
			for i := range r.Conditions {
				c := &r.Conditions[i]
				v, err := e.value(c, p, point)
				if err != nil {
					return Result{}, err
				}
				ok, thr := c.Holds(level, v)
				if k == 0 && i == 0 {
					first = Result{Value: v, Threshold: thr}
				}
				if !ok {
					held = false
					break
				}
			}
		}
		if held {
			first.Level = level
			return first, nil
		}
	}
	first.Level = ""
	return first, nil
}

// value is c's value in p: the metric, or its ratio to the baseline minute's.
func (e *Evaluator) value(c *alertstore.Condition, p *schemas.MetricPoint, point func(int64) (*schemas.MetricPoint, bool, error)) (float64, error) {
	if c.MinCount > 0 && p.Count < c.MinCount {
		return math.NaN(), nil
	}
	v, err := Value(c.Metric, p, e.Quantiles)
	if err != nil || c.Baseline == "" {
		return v, err
	}
	back := int64(24 * 3600)
	if c.Baseline == alertstore.BaselineLastWeek {
		back *= 7
	}
	bp, ok, err := point(p.MinuteUnix - back)
	if err != nil || !ok {
		return math.NaN(), err // no baseline, no ratio
	}
	bv, err := Value(c.Metric, bp, e.Quantiles)
	if err != nil {
		return math.NaN(), err
	}
	switch {
	case bv == 0 && v > 0:
		return math.Inf(1), nil // from nothing to something: above any ratio
	case bv == 0:
		return math.NaN(), nil
	}
	return v / bv, nil
}

// MemoryHistory keeps the points it is given for a while, by series and minute; the
// highest revision of a minute wins.
type MemoryHistory struct {
	mu     sync.Mutex
	keep   int64
	newest int64
	series map[string]map[int64]schemas.MetricPoint
}

// NewMemoryHistory keeps points for keep (8 days covers last week's baseline).
func NewMemoryHistory(keep time.Duration) *MemoryHistory {
	return &MemoryHistory{keep: int64(keep / time.Second), series: map[string]map[int64]schemas.MetricPoint{}}
}

// Put stores p unless a higher revision of its minute is stored; points older than keep
// (behind the newest minute seen) are dropped.
func (h *MemoryHistory) Put(p schemas.MetricPoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p.MinuteUnix > h.newest {
		if h.newest/3600 != p.MinuteUnix/3600 {
			h.evict(p.MinuteUnix - h.keep) // once an hour is often enough
		}
		h.newest = p.MinuteUnix
	}
	if p.MinuteUnix < h.newest-h.keep {
		return
	}
	m := h.series[p.SeriesID]
	if m == nil {
		m = map[int64]schemas.MetricPoint{}
		h.series[p.SeriesID] = m
	}
	if old, ok := m[p.MinuteUnix]; ok && old.Revision > p.Revision {
		return
	}
	m[p.MinuteUnix] = p
}

func (h *MemoryHistory) evict(before int64) {
	for id, m := range h.series {
		for minute := range m {
			if minute < before {
				delete(m, minute)
			}
		}
		if len(m) == 0 {
			delete(h.series, id)
		}
	}
}

// Point implements History.
func (h *MemoryHistory) Point(_ context.Context, seriesID string, minuteUnix int64) (schemas.MetricPoint, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.series[seriesID][minuteUnix]
	return p, ok, nil
}
