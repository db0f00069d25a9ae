package rules

import (
	"context"
	"fmt"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/sketch"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// StoreHistory answers History from the metric store, where the aggregator's phase 2 keeps
// every minute point: baselines ("the same minute yesterday") read what was stored then.
type StoreHistory struct{ Store metricstore.Store }

// Point reads one series' minute.
func (h StoreHistory) Point(ctx context.Context, seriesID string, minuteUnix int64) (schemas.MetricPoint, bool, error) {
	k := metricstore.Key{SeriesID: seriesID, Minute: minuteUnix}
	got, err := h.Store.Get(ctx, []metricstore.Key{k})
	if err != nil {
		return schemas.MetricPoint{}, false, err
	}
	p, ok := got[k]
	if !ok {
		return schemas.MetricPoint{}, false, nil
	}
	// The history answers by series id; the labels are not needed by the rules.
	return *metricstore.Record(metric.Labels{}, &p), true, nil
}

// SketchQuantiles reads a point's latency quantiles from its sketch (a Prometheus
// native-histogram bucket layout; see internal/sketch), clamped to the exact min and max as
// the metrics API reports them, so a rule and a chart agree.
func SketchQuantiles(p *schemas.MetricPoint) (Quantiles, error) {
	if p.SketchSchema != sketch.Schema {
		return nil, fmt.Errorf("rules: sketch schema %d, this build reads %d", p.SketchSchema, sketch.Schema)
	}
	st := &metric.Stats{Count: p.CountUnits, Min: p.MinNano, Max: p.MaxNano}
	if err := st.Sketch.Decode(p.Sketch); err != nil {
		return nil, fmt.Errorf("rules: point %s@%d: %w", p.SeriesID, p.MinuteUnix, err)
	}
	return st, nil
}
