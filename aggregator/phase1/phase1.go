// Package phase1 is the pure core of aggregator phase 1: it folds the spans of one contiguous
// offset range of one mercury.spans partition into partials, one per series and 20 s
// event-time window. The partials of a range are a function of the range's records and of
// the partition's watermark when the range began, nothing else: replaying a range after a
// crash yields the very same partials, which is what lets phase 2 drop the copies.
//
// Lateness is decided here, per partition, against the partition's watermark (the newest
// span start seen in it so far, in offset order): a span that started more than Lateness
// before the watermark is too late, dropped and counted. The watermark is a function of the
// partition's records too, so the decision is the same in every replay.
package phase1

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/sketch"
	"github.com/mercury-apm/mercury/schemas"
)

// Config tunes the fold. The zero value takes the defaults.
type Config struct {
	Window   time.Duration // event-time window; default 20 s; must divide a minute
	Lateness time.Duration // default 30 min
	// MaxFuture drops spans that start further than this ahead of the wall clock (a host
	// with a broken clock): one of them would otherwise move the partition's watermark ahead
	// and make every correct span too late. Default 1 h.
	MaxFuture time.Duration
	// MaxSeriesPerService caps the distinct series of one service (domain, service, dyed)
	// within a range; spans of further series are counted under operation and host
	// metric.Other (edges: peer metric.Other). Default 1000.
	MaxSeriesPerService int
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Window <= 0 {
		c.Window = 20 * time.Second
	}
	if c.Lateness <= 0 {
		c.Lateness = 30 * time.Minute
	}
	if c.MaxSeriesPerService <= 0 {
		c.MaxSeriesPerService = 1000
	}
	if c.MaxFuture <= 0 {
		c.MaxFuture = time.Hour
	}
}

// seriesAgg is one series' windows in the range. A range usually touches one or two
// windows of a series, so they are a short slice searched from the last one used.
type seriesAgg struct {
	labels metric.Labels // owned strings (a decoded span's may alias its message)
	wins   []windowAgg
	last   int
}

type windowAgg struct {
	start int64 // Unix ms
	st    *metric.Stats
}

type serviceKey struct {
	domain, service string
	dyed            bool
}

// Outcome says what Add did with a span.
type Outcome uint8

const (
	Counted  Outcome = iota
	TooLate          // older than the watermark minus Lateness: dropped
	Overflow         // counted, under a service's __other__ series
	Future           // started more than MaxFuture after now: dropped, the watermark untouched
)

// Range folds one range of one partition. Not safe for concurrent use.
type Range struct {
	cfg       Config
	partition int32
	first     int64 // -1: empty
	last      int64
	startWM   int64 // watermark (ns) before the range
	wm        int64
	series    map[metric.Labels]*seriesAgg // admitted in this range, __other__ included
	perSvc    map[serviceKey]int
	open      int
	free      []*metric.Stats
}

// New starts an empty range of partition at watermark wm (ns; 0 when nothing was seen).
func New(cfg Config, partition int32, wm int64) *Range {
	cfg.Defaults()
	return &Range{cfg: cfg, partition: partition, first: -1, last: -1, startWM: wm, wm: wm,
		series: map[metric.Labels]*seriesAgg{}, perSvc: map[serviceKey]int{}}
}

// Skip extends the range over a record that holds no span (undecodable, dead-lettered).
func (r *Range) Skip(offset int64) { r.extend(offset) }

func (r *Range) extend(offset int64) {
	if r.first < 0 {
		r.first = offset
	}
	r.last = offset
}

// Add folds the span at offset, read at wall-clock time now (Unix ns). Offsets must increase.
// The span's strings may alias a buffer that is reused after Add returns: whatever is kept is
// copied.
//
// now only guards against spans from the future, so replays decide alike for every span that
// started less than MaxFuture ahead of the clock when it was first read.
func (r *Range) Add(offset int64, s *schemas.Span, now int64) Outcome {
	r.extend(offset)
	start := s.StartUnixNano
	if start > now+int64(r.cfg.MaxFuture) {
		return Future
	}
	r.wm = max(r.wm, start)
	if r.wm-start > int64(r.cfg.Lateness) {
		return TooLate
	}
	win := floorDiv(start/int64(time.Millisecond), r.cfg.Window.Milliseconds()) * r.cfg.Window.Milliseconds()
	w := metric.Weight(s.SampleRate)
	isErr := s.Status == schemas.StatusError
	out := Counted
	sa, over := r.admit(metric.SeriesOf(s))
	if over {
		out = Overflow
	}
	r.stats(sa, win).Add(s.DurationNano, w, isErr)
	if e, ok := metric.EdgeOf(s); ok {
		sa, _ = r.admit(e)
		r.stats(sa, win).Add(s.DurationNano, w, isErr)
	}
	return out
}

// admit returns the series a span is counted under: its own, or the service's overflow
// series once the service has MaxSeriesPerService series in this range.
func (r *Range) admit(l metric.Labels) (*seriesAgg, bool) {
	if sa := r.series[l]; sa != nil {
		return sa, false
	}
	sk := serviceKey{l.Domain, l.Service, l.Dyed}
	over := r.perSvc[sk] >= r.cfg.MaxSeriesPerService
	if over {
		l = l.Overflow()
		if sa := r.series[l]; sa != nil {
			return sa, true
		}
	} else {
		r.perSvc[serviceKey{strings.Clone(l.Domain), strings.Clone(l.Service), l.Dyed}]++
	}
	l = metric.Labels{Domain: strings.Clone(l.Domain), Service: strings.Clone(l.Service), Operation: strings.Clone(l.Operation),
		Kind: l.Kind, Host: strings.Clone(l.Host), Peer: strings.Clone(l.Peer), Dyed: l.Dyed}
	sa := &seriesAgg{labels: l}
	r.series[l] = sa
	return sa, over
}

func (r *Range) stats(sa *seriesAgg, win int64) *metric.Stats {
	if sa.last < len(sa.wins) && sa.wins[sa.last].start == win {
		return sa.wins[sa.last].st
	}
	for i := len(sa.wins) - 1; i >= 0; i-- {
		if sa.wins[i].start == win {
			sa.last = i
			return sa.wins[i].st
		}
	}
	var st *metric.Stats
	if n := len(r.free); n > 0 {
		st, r.free = r.free[n-1], r.free[:n-1]
	} else {
		st = new(metric.Stats)
	}
	sa.wins = append(sa.wins, windowAgg{win, st})
	sa.last = len(sa.wins) - 1
	r.open++
	return st
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Open is the number of (series, window) aggregates held: the state to bound.
func (r *Range) Open() int { return r.open }

// Bounds returns the range's first and last offset; ok is false for an empty range.
func (r *Range) Bounds() (first, last int64, ok bool) { return r.first, r.last, r.first >= 0 }

// StartWatermark is the watermark the range began with; Watermark the one it ends with.
func (r *Range) StartWatermark() int64 { return r.startWM }

// Watermark is the newest span start (ns) seen in the partition up to the range's end.
func (r *Range) Watermark() int64 { return r.wm }

// Partials appends the range's partials to dst, ordered by series id and window so that a
// replay emits the same sequence.
func (r *Range) Partials(dst []schemas.MetricPartial) []schemas.MetricPartial {
	n := len(dst)
	for _, sa := range r.series {
		l, id := sa.labels, sa.labels.ID()
		for _, w := range sa.wins {
			st := w.st
			dst = append(dst, schemas.MetricPartial{
				SeriesID: id, Domain: l.Domain, Service: l.Service, Operation: l.Operation, Kind: l.Kind,
				Peer: l.Peer, Host: l.Host, Dyed: l.Dyed,
				WindowStartUnixMilli: w.start, WindowMillis: int32(r.cfg.Window.Milliseconds()),
				CountUnits: st.Count, ErrorUnits: st.Errors, SumUnits: st.Sum.Bytes(), MinNano: st.Min, MaxNano: st.Max,
				Sketch: st.Sketch.AppendBinary(nil), SketchSchema: sketch.Schema,
				SourcePartition: r.partition, FirstOffset: r.first, LastOffset: r.last,
			})
		}
	}
	slices.SortFunc(dst[n:], func(a, b schemas.MetricPartial) int {
		return cmp.Or(cmp.Compare(a.SeriesID, b.SeriesID), cmp.Compare(a.WindowStartUnixMilli, b.WindowStartUnixMilli))
	})
	return dst
}

// Next empties the range for the one that follows, at the watermark this one ended with.
func (r *Range) Next() {
	for _, sa := range r.series {
		for _, w := range sa.wins {
			w.st.Reset()
			r.free = append(r.free, w.st)
		}
	}
	clear(r.series)
	r.open = 0
	clear(r.perSvc)
	r.first, r.last, r.startWM = -1, -1, r.wm
}
