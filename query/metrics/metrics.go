// Package metrics is the query service's metrics room: series of a service's qps, error
// rate, mean and percentile latency at 1 m, 5 m or 1 h steps, the call topology, and the
// services with their operations, all read from the metric store. A coarser step merges the
// minutes' sketches and sums, so a 1 h p99 is the p99 of the hour, never an average of
// minute percentiles.
package metrics

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// Room serves the metrics endpoints over a metric store.
type Room struct {
	Store metricstore.Store
	Now   func() time.Time // nil: time.Now
}

// Register mounts GET /api/v1/metrics, /api/v1/topology and /api/v1/services.
func (m *Room) Register(rt *api.Router) {
	rt.Handle("GET /api/v1/metrics", m.series)
	rt.Handle("GET /api/v1/topology", m.topology)
	rt.Handle("GET /api/v1/services", m.services)
}

func (m *Room) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Metrics a series can show.
var metricNames = []string{"qps", "error_rate", "avg", "p50", "p90", "p99", "count"}

var steps = map[string]time.Duration{"1m": time.Minute, "5m": 5 * time.Minute, "1h": time.Hour}

// maxBuckets bounds one answer (a week at 1 m is 10,080).
const maxBuckets = 11000

// Query is a parsed /api/v1/metrics request.
type Query struct {
	Filter     metricstore.Filter
	Kind       schemas.SpanKind
	Metric     string
	Start, End time.Time // aligned to Step; End exclusive
	Step       time.Duration
}

// ParseQuery validates /api/v1/metrics parameters. The window defaults to the hour before
// now, the step to 1m, the kind to SERVER (a service's own requests).
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	p := api.NewParams(v, "domain", "service", "operation", "host", "kind", "metric", "start", "end", "step", "dyed")
	q := Query{Filter: metricstore.Filter{Domain: p.String("domain"), Service: p.String("service"),
		Operation: p.String("operation"), Host: p.String("host"), Dyed: p.Bool("dyed")}}
	if q.Filter.Service == "" {
		p.Bad("service is required")
	}
	q.Metric = p.String("metric")
	if q.Metric == "" {
		q.Metric = "qps"
	} else if !slices.Contains(metricNames, q.Metric) {
		p.Bad("metric %q: want one of %s", q.Metric, strings.Join(metricNames, ", "))
	}
	q.Kind = schemas.KindServer
	if k := p.String("kind"); k != "" {
		kind, ok := parseKind(k)
		if !ok {
			p.Bad("kind %q: want SERVER, CLIENT, INTERNAL, PRODUCER or CONSUMER", k)
		}
		q.Kind = kind
	}
	stepName := p.String("step")
	if stepName == "" {
		stepName = "1m"
	}
	var ok bool
	if q.Step, ok = steps[stepName]; !ok {
		p.Bad("step %q: want 1m, 5m or 1h", stepName)
		q.Step = time.Minute
	}
	q.Start, q.End = timeWindow(p, now, time.Hour)
	if err := p.Err(); err != nil {
		return q, err
	}
	q.Start, q.End = q.Start.Truncate(q.Step), q.End.Add(q.Step-1).Truncate(q.Step)
	if n := q.End.Sub(q.Start) / q.Step; n > maxBuckets {
		return q, fmt.Errorf("%d steps of %s between start and end: at most %d; use a coarser step", n, stepName, maxBuckets)
	}
	return q, nil
}

// timeWindow reads start and end (default: the lookback before now) and checks their order.
func timeWindow(p *api.Params, now time.Time, lookback time.Duration) (time.Time, time.Time) {
	start, end := p.Time("start"), p.Time("end")
	if end.IsZero() {
		end = now
	}
	if start.IsZero() {
		start = end.Add(-lookback)
	}
	if !start.Before(end) {
		p.Bad("start %s is not before end %s", start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
	}
	return start.UTC(), end.UTC()
}

func parseKind(s string) (schemas.SpanKind, bool) {
	for k := schemas.SpanKind(0); k.Valid(); k++ {
		if strings.EqualFold(k.String(), s) {
			return k, true
		}
	}
	return 0, false
}

// Point is one step of a series; V is null where the metric is undefined (no spans).
type Point struct {
	T time.Time `json:"t"`
	V *float64  `json:"v"`
}

// Series answers /api/v1/metrics.
type Series struct {
	Service string  `json:"service"`
	Metric  string  `json:"metric"`
	Unit    string  `json:"unit"`
	Step    string  `json:"step"`
	Series  int     `json:"series"` // store series merged
	Points  []Point `json:"points"`
}

var units = map[string]string{"qps": "1/s", "error_rate": "ratio", "avg": "ms", "p50": "ms", "p90": "ms", "p99": "ms", "count": "spans"}

func (m *Room) series(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	q, err := ParseQuery(r.URL.Query(), m.now())
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	res, err := Run(r.Context(), m.Store, q)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	return res, http.StatusOK, nil
}

// Run answers a query from the store.
func Run(ctx context.Context, store metricstore.Store, q Query) (*Series, error) {
	ss, err := store.Series(ctx, q.Filter, q.Start, q.End)
	if err != nil {
		return nil, err
	}
	n := int(q.End.Sub(q.Start) / q.Step)
	buckets := make([]metric.Stats, n)
	step, start := int64(q.Step/time.Second), q.Start.Unix()
	merged := 0
	for _, s := range ss {
		if s.Labels.Kind != q.Kind {
			continue
		}
		merged++
		err := store.Range(ctx, s.ID, q.Start, q.End, func(p *metricstore.Point) error {
			if i := (p.Minute - start) / step; i >= 0 && int(i) < n { // a store honours [start, end)
				buckets[i].Merge(&p.Stats)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	res := &Series{Service: q.Filter.Service, Metric: q.Metric, Unit: units[q.Metric], Step: stepName(q.Step), Series: merged, Points: make([]Point, n)}
	for i := range buckets {
		res.Points[i] = Point{T: q.Start.Add(time.Duration(i) * q.Step), V: value(&buckets[i], q.Metric, q.Step)}
	}
	return res, nil
}

func stepName(d time.Duration) string {
	for k, v := range steps {
		if v == d {
			return k
		}
	}
	return d.String()
}

// value is a metric of merged stats; nil where it has no value.
func value(st *metric.Stats, name string, step time.Duration) *float64 {
	var v float64
	switch name {
	case "count":
		v = st.Spans()
	case "qps":
		v = st.Spans() / step.Seconds()
	case "error_rate":
		if st.Count == 0 {
			return nil
		}
		v = st.ErrorRate()
	case "avg":
		if st.Count == 0 {
			return nil
		}
		v = st.MeanNanos() / 1e6
	default: // p50, p90, p99
		if st.Count == 0 {
			return nil
		}
		q := map[string]float64{"p50": 0.5, "p90": 0.9, "p99": 0.99}[name]
		v = st.Quantile(q) / 1e6
	}
	return &v
}
