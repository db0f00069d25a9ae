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
	st := &p.Stats
	return schemas.MetricPoint{
		SeriesID: p.SeriesID, MinuteUnix: p.Minute, Revision: p.Revision,
		Count: st.Spans(), Errors: float64(st.Errors) / metric.Units, SumNano: st.Sum.Float() / metric.Units,
		MinNano: st.Min, MaxNano: st.Max, Sketch: st.Sketch.AppendBinary(nil), SketchSchema: sketch.Schema,
		CountUnits: st.Count, ErrorUnits: st.Errors, SumUnits: st.Sum.Bytes(),
	}, true, nil
}

// SketchQuantiles reads a point's latency quantiles from its sketch (a Prometheus
// native-histogram bucket layout; see internal/sketch).
func SketchQuantiles(p *schemas.MetricPoint) (Quantiles, error) {
	if p.SketchSchema != sketch.Schema {
		return nil, fmt.Errorf("rules: sketch schema %d, this build reads %d", p.SketchSchema, sketch.Schema)
	}
	var s sketch.Sketch
	if err := s.Decode(p.Sketch); err != nil {
		return nil, fmt.Errorf("rules: point %s@%d: %w", p.SeriesID, p.MinuteUnix, err)
	}
	return &s, nil
}
