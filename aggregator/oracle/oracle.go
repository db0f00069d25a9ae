// Package oracle recomputes the aggregator's minute points in one batch pass over the spans of
// mercury.spans, partition by partition in offset order, and compares a metric store with the
// result: what the two streaming phases must end up with, whatever crashed and replayed.
package oracle

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/sketch"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// Oracle accumulates spans into minute points.
type Oracle struct {
	lateness time.Duration
	points   map[metricstore.Key]*metric.Stats
	labels   map[string]metric.Labels
	values   map[metricstore.Key][]weighted // raw durations, for exact quantiles
	wm       map[int]int64                  // newest start seen per partition
	// TooLate counts the spans phase 1 must drop: further than the lateness behind the newest
	// span of their partition read before them.
	TooLate int
}

type weighted struct{ d, w int64 }

// New returns an empty oracle for phase 1's lateness.
func New(lateness time.Duration) *Oracle {
	return &Oracle{lateness: lateness, points: map[metricstore.Key]*metric.Stats{}, labels: map[string]metric.Labels{},
		values: map[metricstore.Key][]weighted{}, wm: map[int]int64{}}
}

// Add folds the next span of a partition: into its series' minute and its edge's, unless it
// is too late.
func (o *Oracle) Add(partition int, s *schemas.Span) {
	o.wm[partition] = max(o.wm[partition], s.StartUnixNano)
	if o.wm[partition]-s.StartUnixNano > int64(o.lateness) {
		o.TooLate++
		return
	}
	minute := time.Unix(0, s.StartUnixNano).Truncate(time.Minute).Unix()
	add := func(l metric.Labels) {
		k := metricstore.Key{SeriesID: l.ID(), Minute: minute}
		st := o.points[k]
		if st == nil {
			st = new(metric.Stats)
			o.points[k] = st
			o.labels[k.SeriesID] = l
		}
		w := metric.Weight(s.SampleRate)
		st.Add(s.DurationNano, w, s.Status == schemas.StatusError)
		o.values[k] = append(o.values[k], weighted{s.DurationNano, w})
	}
	add(metric.SeriesOf(s))
	if e, ok := metric.EdgeOf(s); ok {
		add(e)
	}
}

// Points is the number of minute points computed.
func (o *Oracle) Points() int { return len(o.points) }

// maxDiffs bounds what Diff lists: past it, more of the same tells nothing new.
const maxDiffs = 20

// Diff compares store with the oracle over [from, to): every point bit-identical, quantiles
// within the sketch's bound of the exact ones, no point the oracle lacks. It returns the
// differences found (at most maxDiffs, then a count); an error only when the store fails.
func (o *Oracle) Diff(ctx context.Context, store metricstore.Store, from, to time.Time) ([]string, error) {
	var diffs []string
	note := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	keys := make([]metricstore.Key, 0, len(o.points))
	for k := range o.points {
		keys = append(keys, k)
	}
	got, err := store.Get(ctx, keys)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		want := o.points[k]
		g, ok := got[k]
		switch {
		case !ok:
			note("point %s (%+v) minute %d missing", k.SeriesID, o.labels[k.SeriesID], k.Minute)
		case !bytes.Equal(g.Stats.AppendBinary(nil), want.AppendBinary(nil)):
			note("point %s minute %d: count %d errors %d sum %v min %d max %d, want %d %d %v %d %d", k.SeriesID, k.Minute,
				g.Stats.Count, g.Stats.Errors, g.Stats.Sum, g.Stats.Min, g.Stats.Max, want.Count, want.Errors, want.Sum, want.Min, want.Max)
		default:
			for _, q := range []float64{0.5, 0.9, 0.99} {
				exact := exactQuantile(o.values[k], q)
				if est := g.Stats.Quantile(q); math.Abs(est-exact) > exact*sketch.RelativeError*(1+1e-9) {
					note("point %s minute %d: p%v %v, exact %v", k.SeriesID, k.Minute, q*100, est, exact)
				}
			}
		}
	}
	// Nothing beyond the oracle: every stored series and minute is one the oracle has.
	stored := 0
	for _, f := range []metricstore.Filter{{}, {Edges: true}, {Dyed: true}, {Dyed: true, Edges: true}} {
		series, err := store.Series(ctx, f, from, to)
		if err != nil {
			return nil, err
		}
		for _, s := range series {
			err := store.Range(ctx, s.ID, from, to, func(p *metricstore.Point) error {
				stored++
				if _, ok := o.points[metricstore.Key{SeriesID: p.SeriesID, Minute: p.Minute}]; !ok {
					note("stored point %s minute %d is not in the oracle", p.SeriesID, p.Minute)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	if stored != len(o.points) {
		note("%d points stored, oracle has %d", stored, len(o.points))
	}
	if len(diffs) > maxDiffs {
		diffs = append(diffs[:maxDiffs], fmt.Sprintf("… and %d more differences", len(diffs)-maxDiffs))
	}
	return diffs, nil
}

// exactQuantile is the nearest-rank quantile of raw values, sketch.Rank's definition.
func exactQuantile(vs []weighted, q float64) float64 {
	vs = slices.Clone(vs)
	slices.SortFunc(vs, func(a, b weighted) int { return int(a.d - b.d) })
	var total int64
	for _, v := range vs {
		total += v.w
	}
	rank, cum := sketch.Rank(q, total), int64(0)
	for _, v := range vs {
		if cum += v.w; cum >= rank {
			return float64(v.d)
		}
	}
	return math.NaN()
}
