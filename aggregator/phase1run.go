package aggregator

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/aggregator/phase1"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
)

// runPhase1 folds one partition of mercury.spans, range after range.
func (a *Aggregator) runPhase1(ctx context.Context, offs *offsets, w *kafka.Writer, part int) error {
	cp, r, err := a.resume(ctx, offs, part)
	if err != nil {
		return ended(ctx, err)
	}
	defer r.Close()
	label := strconv.Itoa(part)
	p := &p1{a: a, offs: offs, w: w, part: part, rg: phase1.New(a.cfg.Fold, int32(part), cp.wm), replayTo: cp.intent,
		lag: a.m.lag.WithLabelValues(label), open: a.m.open.WithLabelValues(label), series: a.m.series.WithLabelValues(label)}
	if cp.intent >= 0 {
		a.cfg.Logger.Info("aggregator: replaying an interrupted flush", "partition", part, "first", cp.offset, "last", cp.intent)
	}
	defer a.m.open.DeleteLabelValues(label)
	defer a.m.series.DeleteLabelValues(label)
	var span schemas.Span
	f := &fetcher{a: a, r: r, ctx: ctx}
	defer f.close()
	// The input is read in windows of Idle: a window in which nothing arrived means the
	// partition is caught up, and what is held is emitted without waiting out the interval.
	winStart, got := time.Now(), false
	for {
		deadline := winStart.Add(a.cfg.Idle)
		if _, _, ok := p.rg.Bounds(); ok {
			deadline = minTime(deadline, p.since.Add(a.cfg.FlushInterval))
		}
		m, ok, err := f.next(deadline)
		if err != nil {
			if ctx.Err() == nil {
				return err
			}
			if p.replayTo < 0 { // an unfinished replay is redone by the next start
				gctx, cancel := a.graceCtx(ctx)
				p.flush(gctx) // if it fails, the next start replays or re-reads the range
				cancel()
			}
			return nil
		}
		if !ok {
			quiet := !got || time.Since(p.since) >= a.cfg.FlushInterval
			if p.replayTo < 0 && quiet {
				if err := p.flush(ctx); err != nil {
					return ended(ctx, err)
				}
			}
			winStart, got = time.Now(), false
			continue
		}
		got = true
		if p.replayTo >= 0 && m.Offset > p.replayTo {
			// The interrupted range's tail is gone (retention): emit what is left of it.
			a.cfg.Logger.Warn("aggregator: records of an interrupted flush are gone", "partition", part, "last", p.replayTo, "next", m.Offset)
			if err := p.flushReplay(ctx); err != nil {
				return ended(ctx, err)
			}
		}
		if _, _, any := p.rg.Bounds(); !any {
			p.since = time.Now()
		}
		p.lag.Set(float64(m.HighWaterMark - m.Offset - 1))
		p.add(m, &span)
		switch {
		case p.replayTo >= 0:
			if m.Offset == p.replayTo {
				err = p.flushReplay(ctx)
			}
		case p.rg.Open() >= a.cfg.MaxOpen || time.Since(p.since) >= a.cfg.FlushInterval:
			err = p.flush(ctx)
		}
		if err != nil {
			return ended(ctx, err)
		}
	}
}

var spanFingerprint = schemas.Current(schemas.NameSpan).Fingerprint

// p1 is one partition's phase-1 state.
type p1 struct {
	a        *Aggregator
	offs     *offsets
	w        *kafka.Writer
	part     int
	rg       *phase1.Range
	replayTo int64 // last offset of the interrupted range being replayed; -1 when none
	since    time.Time
	partials []schemas.MetricPartial
	msgs     []kafka.Message

	lag, open, series prometheus.Gauge
}

func (p *p1) add(m kafka.Message, span *schemas.Span) {
	a := p.a
	fp, body, err := schemas.SingleFingerprint(m.Value)
	if err == nil {
		var rest []byte
		if fp == spanFingerprint {
			rest, err = schemas.DecodeSpanAliased(body, span) // the fold copies what it keeps
		} else {
			rest, err = schemas.DecodeBinary(fp, body, span) // an older writer
		}
		if err == nil && len(rest) != 0 {
			err = schemas.ErrCorrupt
		}
	}
	if err != nil {
		a.m.bad.Inc()
		p.rg.Skip(m.Offset)
		return
	}
	a.m.records.Inc()
	wm := p.rg.Watermark()
	switch p.rg.Add(m.Offset, span, time.Now().UnixNano()) {
	case phase1.TooLate:
		a.m.tooLate.Inc()
		return
	case phase1.Future:
		a.m.future.Inc()
		return
	case phase1.Overflow:
		a.m.overflow.Inc()
	}
	if span.StartUnixNano+int64(a.cfg.Fold.Window) < wm { // its window had passed
		a.m.late.Inc()
	}
}

// flush emits the range under an intent: commit the intent, emit, commit past the range.
func (p *p1) flush(ctx context.Context) error {
	first, last, ok := p.rg.Bounds()
	if !ok {
		return nil
	}
	intent := checkpoint{offset: first, wm: p.rg.StartWatermark(), intent: last}
	if err := p.a.retry(ctx, func() error { return p.offs.commit(ctx, p.part, first, intent.metadata()) }); err != nil {
		return err
	}
	at("phase1-intent")
	return p.emit(ctx)
}

// flushReplay emits the range whose intent is already committed.
func (p *p1) flushReplay(ctx context.Context) error {
	p.replayTo = -1
	return p.emit(ctx)
}

func (p *p1) emit(ctx context.Context) error {
	a := p.a
	_, last, ok := p.rg.Bounds()
	if !ok {
		return nil
	}
	p.partials = p.rg.Partials(p.partials[:0])
	p.msgs = p.msgs[:0]
	for i := range p.partials {
		v, err := schemas.Marshal(&p.partials[i])
		if err != nil {
			return err // a defect: every field is ours
		}
		p.msgs = append(p.msgs, kafka.Message{Topic: bus.TopicMetrics20s, Key: []byte(p.partials[i].SeriesID), Value: v})
	}
	p.series.Set(float64(countSeries(p.partials)))
	p.open.Set(float64(p.rg.Open()))
	if len(p.msgs) > 0 {
		if err := a.retry(ctx, func() error { return p.w.WriteMessages(ctx, p.msgs...) }); err != nil {
			return err
		}
	}
	at("phase1-emitted")
	done := checkpoint{wm: p.rg.Watermark(), intent: -1}
	if err := a.retry(ctx, func() error { return p.offs.commit(ctx, p.part, last+1, done.metadata()) }); err != nil {
		return err
	}
	a.m.emitted.Add(float64(len(p.msgs)))
	a.m.flushes.Inc()
	p.rg.Next()
	p.open.Set(0)
	return nil
}

// countSeries counts distinct series ids among partials sorted by series id.
func countSeries(ps []schemas.MetricPartial) int {
	n := 0
	for i := range ps {
		if i == 0 || ps[i].SeriesID != ps[i-1].SeriesID {
			n++
		}
	}
	return n
}
