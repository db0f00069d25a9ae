package aggregator

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/aggregator/phase2"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// batchSize is how many partials phase 2 decodes before one store read for the points they
// need.
const batchSize = 2000

// point is a minute point held by phase 2.
type point struct {
	labels   metric.Labels
	p        phase2.Point
	revision int32
	dirty    bool
}

// p2 is one partition's phase-2 state.
type p2 struct {
	a      *Aggregator
	offs   *offsets
	w      *kafka.Writer
	part   int
	label  string
	points map[metricstore.Key]*point
	next   int64 // offset after the last merged partial; -1 before any
	done   int64 // the offset last committed
	dirty  int
	batch  []kafka.Message
	// decoded is the batch's partials, reused from batch to batch.
	decoded []decoded
	admit   *admission
}

type decoded struct {
	part   schemas.MetricPartial
	key    metricstore.Key // the point it merges into: its series' or the __other__ one
	labels metric.Labels
	stream phase2.Stream
	window uint8
	stats  metric.Stats
}

// runPhase2 merges one partition of mercury.metrics.20s into minute points.
func (a *Aggregator) runPhase2(ctx context.Context, offs *offsets, w *kafka.Writer, part, parts int) error {
	_, r, err := a.resume(ctx, offs, part)
	if err != nil {
		return ended(ctx, err)
	}
	defer r.Close()
	p := &p2{a: a, offs: offs, w: w, part: part, label: strconv.Itoa(part), points: map[metricstore.Key]*point{}, next: -1, done: -1,
		admit: newAdmission(a.cfg.Store, a.cfg.MaxSeries, part, parts)}
	defer a.m.open.DeleteLabelValues(p.label)
	defer a.m.series.DeleteLabelValues(p.label)
	lag := a.m.lag.WithLabelValues(p.label)
	lastFlush, batchStart := time.Now(), time.Time{}
	winStart, got := lastFlush, false // as in phase 1: a quiet window flushes what is held
	f := &fetcher{a: a, r: r, ctx: ctx}
	defer f.close()
	for {
		deadline := minTime(lastFlush.Add(a.cfg.FlushInterval), winStart.Add(a.cfg.Idle))
		if len(p.batch) > 0 {
			deadline = minTime(deadline, batchStart.Add(20*time.Millisecond)) // a partial batch waits briefly for more
		}
		m, ok, err := f.next(deadline)
		if err != nil {
			if ctx.Err() == nil {
				return err
			}
			gctx, cancel := a.graceCtx(ctx)
			defer cancel()
			if p.merge(gctx) == nil {
				p.flush(gctx)
			}
			return nil
		}
		if ok {
			got = true
			lag.Set(float64(m.HighWaterMark - m.Offset - 1))
			if len(p.batch) == 0 {
				batchStart = time.Now()
			}
			p.batch = append(p.batch, m)
		}
		if len(p.batch) >= batchSize || (!ok && len(p.batch) > 0) {
			if err := p.merge(ctx); err != nil {
				return ended(ctx, err)
			}
		}
		quiet := !ok && !got
		if !ok && len(p.batch) == 0 {
			winStart, got = time.Now(), false
		}
		if p.dirty >= a.cfg.MaxPoints/2 || time.Since(lastFlush) >= a.cfg.FlushInterval || (quiet && p.dirty > 0) {
			if err := p.flush(ctx); err != nil {
				return ended(ctx, err)
			}
			lastFlush = time.Now()
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// merge decodes the batch, loads the points it needs that are not held, and merges.
func (p *p2) merge(ctx context.Context) error {
	a := p.a
	if len(p.batch) == 0 {
		return nil
	}
	ds := p.decoded[:0]
	var missing []metricstore.Key
	seen := map[metricstore.Key]bool{}
	for _, m := range p.batch {
		if len(ds) < cap(ds) {
			ds = ds[:len(ds)+1] // reused: its buffers and sketch storage stay
		} else {
			ds = append(ds, decoded{})
		}
		d := &ds[len(ds)-1]
		d.part = schemas.MetricPartial{SumUnits: d.part.SumUnits[:0], Sketch: d.part.Sketch[:0]}
		err := schemas.Unmarshal(m.Value, &d.part)
		if err == nil {
			d.window, err = phase2.Decode(&d.part, &d.stats)
		}
		if err != nil {
			ds = ds[:len(ds)-1]
			a.m.bad.Inc()
			if derr := a.retry(ctx, func() error { return bus.SendDLQ(ctx, p.w, m, err) }); derr != nil {
				return derr
			}
			continue
		}
		minute := phase2.Minute(&d.part)
		var id string
		var over bool
		if err := a.retry(ctx, func() (err error) {
			d.labels, id, over, err = p.admit.target(ctx, phase2.LabelsOf(&d.part), d.part.SeriesID, minute)
			return err
		}); err != nil {
			return err
		}
		d.key, d.stream = metricstore.Key{SeriesID: id, Minute: minute}, phase2.Stream{Partition: d.part.SourcePartition}
		if over {
			d.stream.Origin = phase2.OriginOf(d.part.SeriesID)
			a.m.overflow.Inc()
		}
		if p.points[d.key] == nil && !seen[d.key] {
			seen[d.key] = true
			missing = append(missing, d.key)
		}
	}
	p.decoded = ds
	if len(missing) > 0 {
		var stored map[metricstore.Key]metricstore.Point
		if err := a.retry(ctx, func() (err error) { stored, err = a.cfg.Store.Get(ctx, missing); return err }); err != nil {
			return err
		}
		for _, k := range missing {
			pt := &point{}
			if sp, ok := stored[k]; ok {
				if err := pt.p.DecodeState(sp.State); err != nil {
					return retry.Permanent(fmt.Errorf("aggregator: stored point %s@%d is unusable, refusing to merge into it: %w", k.SeriesID, k.Minute, err))
				}
				pt.p.Stats, pt.revision = sp.Stats, sp.Revision
			}
			p.points[k] = pt
		}
	}
	for i := range ds {
		d := &ds[i]
		pt := p.points[d.key]
		pt.labels = d.labels
		a.m.records.Inc()
		if !pt.p.Merge(d.stream, d.part.FirstOffset, d.window, &d.stats) {
			a.m.duplicates.Inc()
			continue
		}
		if !pt.dirty {
			pt.dirty = true
			p.dirty++
		}
	}
	p.next = p.batch[len(p.batch)-1].Offset + 1
	p.batch = p.batch[:0]
	a.m.open.WithLabelValues(p.label).Set(float64(len(p.points)))
	return nil
}

// flush upserts the changed points with a new revision, emits them, then commits.
func (p *p2) flush(ctx context.Context) error {
	a := p.a
	if p.next < 0 || (p.next == p.done && p.dirty == 0) {
		return nil // nothing merged, or nothing since the last commit
	}
	ups := make([]metricstore.Upsert, 0, p.dirty)
	var msgs []kafka.Message
	for k, pt := range p.points {
		if !pt.dirty {
			continue
		}
		u := metricstore.Upsert{Labels: pt.labels, Point: metricstore.Point{
			SeriesID: k.SeriesID, Minute: k.Minute, Revision: pt.revision + 1, Stats: pt.p.Stats, State: pt.p.AppendState(nil)}}
		ups = append(ups, u)
		v, err := schemas.Marshal(metricstore.Record(u.Labels, &u.Point))
		if err != nil {
			return err
		}
		msgs = append(msgs, kafka.Message{Topic: bus.TopicMetrics1m, Key: []byte(k.SeriesID), Value: v})
	}
	if len(ups) > 0 {
		if err := a.retry(ctx, func() error { return a.cfg.Store.Upsert(ctx, ups) }); err != nil {
			return err
		}
		at("phase2-stored")
		if err := a.retry(ctx, func() error { return p.w.WriteMessages(ctx, msgs...) }); err != nil {
			return err
		}
	}
	if err := a.retry(ctx, func() error { return p.offs.commit(ctx, p.part, p.next, "") }); err != nil {
		return err
	}
	p.done = p.next
	for _, u := range ups {
		pt := p.points[metricstore.Key{SeriesID: u.Point.SeriesID, Minute: u.Point.Minute}]
		pt.dirty, pt.revision = false, u.Point.Revision
		if pt.revision > 1 {
			a.m.late.Inc()
		}
	}
	a.m.emitted.Add(float64(len(ups)))
	a.m.flushes.Inc()
	p.dirty = 0
	p.evict()
	return nil
}

// evict drops the oldest stored points beyond MaxPoints (a late partial re-reads them).
func (p *p2) evict() {
	limit := p.a.cfg.MaxPoints
	if len(p.points) > limit {
		keys := make([]metricstore.Key, 0, len(p.points))
		for k := range p.points {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(x, y metricstore.Key) int { return cmp.Compare(x.Minute, y.Minute) })
		for _, k := range keys[:len(keys)-limit*3/4] {
			delete(p.points, k) // all clean right after a flush
		}
	}
	series := map[string]struct{}{}
	for k := range p.points {
		series[k.SeriesID] = struct{}{}
	}
	p.a.m.open.WithLabelValues(p.label).Set(float64(len(p.points)))
	p.a.m.series.WithLabelValues(p.label).Set(float64(len(series)))
}
