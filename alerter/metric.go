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
// carries on where the old one stopped.
type metricConsumer struct {
	a      *Alerter
	latest map[int]map[string]int64 // partition → series → newest minute seen
}

func (c *metricConsumer) handle(ctx context.Context, m kafka.Message) error {
	var p schemas.MetricPoint
	if err := schemas.Unmarshal(m.Value, &p); err != nil {
		return retry.Permanent(fmt.Errorf("decode metric point: %w", err))
	}
	c.a.metricPoints.Inc()
	if c.a.memory != nil {
		c.a.memory.Put(p)
	}
	if c.latest == nil {
		c.latest = map[int]map[string]int64{}
	}
	latest := c.latest[m.Partition]
	if latest == nil {
		latest = map[string]int64{}
		c.latest[m.Partition] = latest
	}
	at := max(latest[p.SeriesID], p.MinuteUnix)
	latest[p.SeriesID] = at
	return c.a.evaluatePoint(ctx, &p, at)
}

// Decisions are stored as they are made, and the alert state lives in the store.
func (c *metricConsumer) flush(context.Context, int) error                 { return nil }
func (c *metricConsumer) tick(context.Context) error                       { return nil }
func (c *metricConsumer) assigned(context.Context, []bus.Assignment) error { return nil }

// revoked forgets the newest minutes of the partitions' series; a new owner learns them
// from the points it replays.
func (c *metricConsumer) revoked(parts []int) {
	for _, p := range parts {
		delete(c.latest, p)
	}
}

// evaluatePoint evaluates every rule covering p's series at minute at (the newest minute of
// the series; p may be a late revision of an earlier one).
func (a *Alerter) evaluatePoint(ctx context.Context, p *schemas.MetricPoint, at int64) error {
	for _, b := range a.rules.Load().metrics {
		if !b.strategy.Applies(p.Domain, p.Service, p.Operation, "") {
			continue
		}
		n := int64(max(b.rule.For, 1))
		if p.MinuteUnix <= at-60*n {
			continue // a revision of a minute no window ending now contains
		}
		res, err := a.evaluator.Evaluate(ctx, b.rule, p.SeriesID, at, p)
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
