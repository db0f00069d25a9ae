package prom

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/sketch"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// The metric families every stored series is served as.
const (
	Calls    = "mercury_span_calls_total"
	Errors   = "mercury_span_errors_total"
	Duration = "mercury_span_duration_seconds" // a native histogram
	DurSum   = Duration + "_sum"
	DurCount = Duration + "_count"
)

// family is what one metric name reads from a minute's Stats.
type family struct {
	name  string
	value func(*metric.Stats) float64 // nil: the native histogram
}

var families = []family{
	{Calls, func(s *metric.Stats) float64 { return float64(s.Count) / metric.Units }},
	{Errors, func(s *metric.Stats) float64 { return float64(s.Errors) / metric.Units }},
	{Duration, nil},
	{DurSum, func(s *metric.Stats) float64 { return s.Sum.Float() / metric.Units / 1e9 }},
	{DurCount, func(s *metric.Stats) float64 { return float64(s.Count) / metric.Units }},
}

// Label names of a series (empty values are left out, as Prometheus does).
var labelNames = []string{"domain", "dyed", "host", "kind", "operation", "peer", "service"}

// secondsShift moves a sketch bucket of nanoseconds to the schema-6 bucket of seconds holding
// most of it: 1e9 = γ^1913.43, so bucket i of ns covers (γ^(i-1-1913.43), γ^(i-1913.43)] s,
// 57 % of which lies in bucket i-1913. A quantile moves by at most 0.43 of a bucket (0.47 %)
// beyond the sketch's own 0.543 %.
var secondsShift = int32(math.Round(math.Log2(1e9) * (1 << sketch.Schema)))

const minute = int64(60_000) // ms

// Queryable serves the metric store to the PromQL engine. Every stored minute becomes one
// sample at the minute's end; counters are cumulative over the minutes the engine selects
// (see docs/grafana.md): only their differences — rate, increase — carry meaning.
type Queryable struct {
	Store metricstore.Store
}

var _ storage.Queryable = Queryable{}

// Querier answers for [mint, maxt] (ms).
func (q Queryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{store: q.Store, mint: mint, maxt: maxt}, nil
}

type querier struct {
	store      metricstore.Store
	mint, maxt int64
}

func (q *querier) Close() error { return nil }

// series lists the stored series whose labels can match ms, with their Prometheus labels
// (without __name__), narrowing the store's scan by the equality matchers it understands.
func (q *querier) series(ctx context.Context, mint, maxt int64, ms []*labels.Matcher) ([]stored, error) {
	var f metricstore.Filter
	edges, dyed := []bool{false, true}, []bool{false, true}
	for _, m := range ms {
		if m.Type != labels.MatchEqual {
			continue
		}
		switch m.Name {
		case "domain":
			f.Domain = m.Value
		case "service":
			f.Service = m.Value
		case "operation":
			f.Operation = m.Value
		case "host":
			f.Host = m.Value
		case "dyed":
			dyed = []bool{m.Value == "true"}
		case "peer":
			edges = []bool{m.Value != ""}
		}
	}
	start, end := time.UnixMilli(mint-minute), time.UnixMilli(maxt)
	var out []stored
	for _, e := range edges {
		for _, d := range dyed {
			f.Edges, f.Dyed = e, d
			ss, err := q.store.Series(ctx, f, start, end)
			if err != nil {
				return nil, err
			}
			for _, s := range ss {
				out = append(out, stored{id: s.ID, labels: promLabels(s.Labels)})
			}
		}
	}
	return out, nil
}

type stored struct {
	id     string
	labels labels.Labels
}

func promLabels(l metric.Labels) labels.Labels {
	b := labels.NewScratchBuilder(8)
	for _, kv := range [][2]string{{"domain", l.Domain}, {"dyed", map[bool]string{false: "false", true: "true"}[l.Dyed]},
		{"host", l.Host}, {"kind", l.Kind.String()}, {"operation", l.Operation}, {"peer", l.Peer}, {"service", l.Service}} {
		if kv[1] != "" {
			b.Add(kv[0], kv[1])
		}
	}
	b.Sort()
	return b.Labels()
}

func matches(l labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

// Select reads the minutes of every matching series at once: the engine iterates them
// several times (and a series' counters start at its total, which needs all of them).
func (q *querier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = hints.Start, hints.End
	}
	fams := make([]family, 0, len(families))
	var rest []*labels.Matcher
	for _, m := range ms {
		if m.Name != labels.MetricName {
			rest = append(rest, m)
		}
	}
	for _, f := range families {
		if matchesName(f.name, ms) {
			fams = append(fams, f)
		}
	}
	if len(fams) == 0 {
		return storage.EmptySeriesSet()
	}
	ss, err := q.series(ctx, mint, maxt, rest)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	first := -floorDiv(-mint, minute) * minute // the first minute end in range
	var out []storage.Series
	for _, s := range ss {
		if !matches(s.labels, rest) {
			continue
		}
		var pts []minutePoint
		// Minutes ending in [first, maxt]; the store's end is exclusive, in seconds.
		end := time.Unix(floorDiv(maxt-minute, 1000)+1, 0)
		err := q.store.Range(ctx, s.id, time.UnixMilli(first-minute), end, func(p *metricstore.Point) error {
			mp := minutePoint{end: (p.Minute + 60) * 1000}
			mp.stats.Merge(&p.Stats) // a copy: the store reuses p
			pts = append(pts, mp)
			return nil
		})
		if err != nil {
			return storage.ErrSeriesSet(err)
		}
		for _, f := range fams {
			b := labels.NewBuilder(s.labels).Set(labels.MetricName, f.name)
			out = append(out, &series{labels: b.Labels(), fam: f, points: pts, first: first, last: maxt})
		}
	}
	if sortSeries {
		slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	}
	return &seriesSet{series: out, i: -1}
}

func matchesName(name string, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if m.Name == labels.MetricName && !m.Matches(name) {
			return false
		}
	}
	return true
}

func (q *querier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	set := map[string]bool{}
	err := q.eachSeries(ctx, ms, func(l labels.Labels) {
		l.Range(func(lb labels.Label) { set[lb.Name] = true })
	})
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	return limit(names, hints), nil, err
}

func (q *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	set := map[string]bool{}
	err := q.eachSeries(ctx, ms, func(l labels.Labels) {
		if v := l.Get(name); v != "" {
			set[v] = true
		}
	})
	vals := make([]string, 0, len(set))
	for v := range set {
		vals = append(vals, v)
	}
	slices.Sort(vals)
	return limit(vals, hints), nil, err
}

func limit(s []string, hints *storage.LabelHints) []string {
	if hints != nil && hints.Limit > 0 && len(s) > hints.Limit {
		return s[:hints.Limit]
	}
	return s
}

// eachSeries calls fn with the labels (__name__ included) of every series matching ms.
func (q *querier) eachSeries(ctx context.Context, ms []*labels.Matcher, fn func(labels.Labels)) error {
	var rest []*labels.Matcher
	for _, m := range ms {
		if m.Name != labels.MetricName {
			rest = append(rest, m)
		}
	}
	ss, err := q.series(ctx, q.mint, q.maxt, rest)
	if err != nil {
		return err
	}
	for _, s := range ss {
		for _, f := range families {
			if !matchesName(f.name, ms) || !matches(s.labels, rest) {
				continue
			}
			fn(labels.NewBuilder(s.labels).Set(labels.MetricName, f.name).Labels())
		}
	}
	return nil
}

type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

type minutePoint struct {
	end   int64 // ms: the sample's timestamp, the end of its minute
	stats metric.Stats
}

// series is one family of one stored series: a sample at every minute end from first to last
// (minutes without spans add nothing, so rate() is 0 there rather than absent).
type series struct {
	labels      labels.Labels
	fam         family
	points      []minutePoint
	first, last int64
}

func (s *series) Labels() labels.Labels { return s.labels }

// Iterator serves the samples through Prometheus's list iterator, computing each lazily.
func (s *series) Iterator(chunkenc.Iterator) chunkenc.Iterator {
	c := &cumulative{s: s}
	n := 0
	if s.last >= s.first {
		n = int((s.last-s.first)/minute) + 1
	}
	c.samples = make([]sample, n)
	for i := range c.samples {
		c.samples[i] = sample{c: c, t: s.first + int64(i)*minute}
	}
	// The counter starts at the total of the selected minutes, as if it had been counting
	// long before: Prometheus then never clamps an extrapolation at an assumed zero start.
	for i := range s.points {
		c.add(&s.points[i].stats)
	}
	c.base, c.baseH = c.f, c.h
	c.reset()
	if s.fam.value != nil {
		for i := range c.samples {
			c.advance(i)
			c.samples[i].f = c.f
		}
	}
	return storage.NewListSeriesIterator(c)
}

// cumulative is the running sum of a series' minutes, sample by sample.
type cumulative struct {
	s        *series
	samples  []sample
	base     float64
	baseH    *histogram.FloatHistogram
	f        float64
	h        *histogram.FloatHistogram
	at, next int // the sample the sums are at; the first point not yet added
}

func (c *cumulative) Len() int                { return len(c.samples) }
func (c *cumulative) Get(i int) chunks.Sample { return &c.samples[i] }

func (c *cumulative) add(st *metric.Stats) {
	if c.s.fam.value != nil {
		c.f += c.s.fam.value(st)
		return
	}
	if c.h == nil {
		c.h = &histogram.FloatHistogram{Schema: sketch.Schema}
	}
	addSketch(c.h, st)
}

// advance moves the sums to sample i (from the base when i is behind).
func (c *cumulative) advance(i int) {
	if i < c.at {
		c.reset()
	}
	t := c.samples[i].t
	for c.next < len(c.s.points) && c.s.points[c.next].end <= t {
		c.add(&c.s.points[c.next].stats)
		c.next++
	}
	c.at = i
}

// reset puts the sums at the base, before the first sample.
func (c *cumulative) reset() {
	c.f, c.next, c.at = c.base, 0, -1
	if c.baseH != nil {
		c.h = c.baseH.Copy()
	} else {
		c.h = &histogram.FloatHistogram{Schema: sketch.Schema}
	}
}

// sample is one minute end of a series.
type sample struct {
	c *cumulative
	t int64
	f float64
}

func (p *sample) T() int64                { return p.t }
func (p *sample) ST() int64               { return 0 }
func (p *sample) F() float64              { return p.f }
func (p *sample) H() *histogram.Histogram { return nil }
func (p *sample) FH() *histogram.FloatHistogram {
	if p.c.s.fam.value != nil {
		return nil
	}
	p.c.advance(int((p.t - p.c.s.first) / minute))
	return p.c.h.Copy()
}

func (p *sample) Type() chunkenc.ValueType {
	if p.c.s.fam.value != nil {
		return chunkenc.ValFloat
	}
	return chunkenc.ValFloatHistogram
}

func (p *sample) Copy() chunks.Sample { q := *p; return &q }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// addSketch adds a minute's sketch to h, bucket for bucket, shifted from ns to seconds.
func addSketch(h *histogram.FloatHistogram, st *metric.Stats) {
	h.Count += float64(st.Count) / metric.Units
	h.Sum += st.Sum.Float() / metric.Units / 1e9
	h.ZeroCount += float64(st.Sketch.Zero()) / metric.Units
	st.Sketch.Buckets(func(i int32, n int64) {
		addBucket(h, i-secondsShift, float64(n)/metric.Units)
	})
}

// addBucket adds v to bucket idx of h, whose positive buckets are kept as one dense span.
func addBucket(h *histogram.FloatHistogram, idx int32, v float64) {
	if len(h.PositiveSpans) == 0 {
		h.PositiveSpans = []histogram.Span{{Offset: idx, Length: 1}}
		h.PositiveBuckets = []float64{v}
		return
	}
	lo := h.PositiveSpans[0].Offset
	switch n := int32(len(h.PositiveBuckets)); {
	case idx < lo:
		h.PositiveBuckets = append(make([]float64, lo-idx), h.PositiveBuckets...)
		h.PositiveSpans[0].Offset = idx
	case idx >= lo+n:
		h.PositiveBuckets = append(h.PositiveBuckets, make([]float64, idx-lo-n+1)...)
	}
	h.PositiveSpans[0].Length = uint32(len(h.PositiveBuckets))
	h.PositiveBuckets[idx-h.PositiveSpans[0].Offset] += v
}
