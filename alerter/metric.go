package alerter

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// metricConsumer evaluates the metric rules that cover each point of mercury.metrics.1m.
// Points are keyed by series, so a series' rules are evaluated by the owner of its
// partition; the alert state lives in the store (one firing alert per key), so a new owner
// carries on where the old one stopped. A series whose points stop is evaluated on, minute
// by minute, as a series without calls (so "qps < 1 for 3 minutes" fires when a service
// goes silent, and an error-rate alert resolves), for up to an hour of silence.
type metricConsumer struct {
	a      *Alerter
	series map[int]map[string]*seriesSeen // partition → series id
}

type seriesSeen struct {
	ident     schemas.MetricPoint // the series' identity (domain, service, operation, ...)
	evaluated int64               // newest minute evaluated
	lastPoint int64               // newest minute a point came for
}

// quietFor is how long a silent series is still evaluated.
const quietFor = int64(3600)

func (c *metricConsumer) handle(ctx context.Context, m kafka.Message) error {
	var p schemas.MetricPoint
	if err := schemas.Unmarshal(m.Value, &p); err != nil {
		return retry.Permanent(fmt.Errorf("decode metric point: %w", err))
	}
	c.a.metricPoints.Inc()
	if c.a.memory != nil {
		c.a.memory.Put(p)
	}
	if c.series == nil {
		c.series = map[int]map[string]*seriesSeen{}
	}
	part := c.series[m.Partition]
	if part == nil {
		part = map[string]*seriesSeen{}
		c.series[m.Partition] = part
	}
	s := part[p.SeriesID]
	if s == nil {
		s = &seriesSeen{}
		part[p.SeriesID] = s
	}
	s.ident = schemas.MetricPoint{SeriesID: p.SeriesID, Domain: p.Domain, Service: p.Service, Operation: p.Operation, Kind: p.Kind, Peer: p.Peer}
	s.evaluated, s.lastPoint = max(s.evaluated, p.MinuteUnix), max(s.lastPoint, p.MinuteUnix)
	return c.a.evaluateSeries(ctx, &s.ident, &p, s.evaluated)
}

// tick evaluates the minutes of silent series whose points are overdue: minute M's point is
// due MetricGrace after M ends.
func (c *metricConsumer) tick(ctx context.Context) error {
	now := c.a.cfg.Now().Unix()
	grace := int64(c.a.cfg.MetricGrace / time.Second)
	for _, part := range c.series {
		for _, s := range part {
			for range 10 { // catch up at most 10 minutes a tick
				next := s.evaluated + 60
				if now < next+60+grace || next-s.lastPoint > quietFor {
					break
				}
				s.evaluated = next
				if err := c.a.evaluateSeries(ctx, &s.ident, nil, next); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Decisions are stored as they are made, and the alert state lives in the store.
func (c *metricConsumer) flush(context.Context, int) error                 { return nil }
func (c *metricConsumer) assigned(context.Context, []bus.Assignment) error { return nil }

// revoked forgets the partitions' series; a new owner learns them from the points it
// replays.
func (c *metricConsumer) revoked(parts []int) {
	for _, p := range parts {
		delete(c.series, p)
	}
}

// evaluateSeries evaluates every rule covering the series at minute at (its newest minute).
// fresh is the point just consumed (nil for a silent minute); it may be a late revision of
// an earlier minute.
func (a *Alerter) evaluateSeries(ctx context.Context, p, fresh *schemas.MetricPoint, at int64) error {
	for _, b := range a.rules.Load().metrics {
		if !b.strategy.Applies(p.Domain, p.Service, p.Operation, "") {
			continue
		}
		n := int64(max(b.rule.For, 1))
		if fresh != nil && fresh.MinuteUnix <= at-60*n {
			continue // a revision of a minute no window ending now contains
		}
		res, err := a.evaluator.Evaluate(ctx, b.rule, p.SeriesID, at, fresh)
		if err != nil {
			return fmt.Errorf("alerter: rule %s on %s: %w", b.rule.Name, p.SeriesID, err)
		}
		c := b.rule.Conditions[0]
		summary := fmt.Sprintf("%s %s: %s %s %s for %d min (%s)", p.Service, p.Operation, c.Metric, opWord(c), fmtValue(res.Threshold), n, b.rule.Name)
		if c.Baseline != "" {
			summary = fmt.Sprintf("%s %s: %s ×%s vs %s (threshold ×%s) for %d min (%s)", p.Service, p.Operation, c.Metric,
				fmtValue(res.Value), c.Baseline, fmtValue(res.Threshold), n, b.rule.Name)
		}
		if res.Level == "" {
			summary = fmt.Sprintf("%s %s: %s back to normal (%s)", p.Service, p.Operation, c.Metric, b.rule.Name)
		}
		st := state{key: "metric/" + b.strategy.Name + "/" + b.rule.Name + "/" + p.SeriesID, level: res.Level, asOf: at,
			value: res.Value, threshold: res.Threshold, summary: summary, startsAt: time.Unix(at-60*(n-1), 0),
			template: alertstore.Alert{Kind: alertstore.KindMetric, Rule: b.rule.Name, Strategy: b.strategy.Name,
				Domain: p.Domain, Service: p.Service, Operation: p.Operation,
				Labels: map[string]string{"series": p.SeriesID, "span_kind": p.Kind.String(), "peer": p.Peer}},
			receivers: func(level string) []string { return b.receivers(level, a.cfg.DefaultReceivers) }}
		if err := a.transition(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

func opWord(c alertstore.Condition) string {
	return map[string]string{">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}[c.Op]
}
