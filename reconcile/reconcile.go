// Package reconcile is `mercury audit`: per service and minute it counts the spans at each
// stage of the pipeline — what the agents reported writing (heartbeats), what reached
// mercury.spans, what the trace store holds, what the metric store aggregated — and names
// the first stage where spans went missing. The query API serves the same report.
package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// MaxRange bounds one audit: the shipped stage keeps every span id of the range in memory
// (about 60 bytes a span) to tell a shipper's duplicate from a second span.
const MaxRange = 6 * time.Hour

// Stages in pipeline order.
const (
	StageReported   = "reported"
	StageShipped    = "shipped"
	StageStored     = "stored"
	StageAggregated = "aggregated"
)

// Config says where to count.
type Config struct {
	Bus     bus.Config
	Traces  tracestore.Index
	Metrics metricstore.Store
	// Skew is how far before From records are looked for in the topics (found by their
	// Kafka timestamp, the time they were shipped, while minutes are the hosts' own clocks).
	// Default 5 minutes.
	Skew time.Duration
	// Lateness is how long after To a span or heartbeat of the range may still be shipped
	// and counted. Default 30 minutes, the aggregator's lateness.
	Lateness time.Duration
}

func (c *Config) defaults() {
	if c.Skew <= 0 {
		c.Skew = 5 * time.Minute
	}
	if c.Lateness <= 0 {
		c.Lateness = 30 * time.Minute
	}
}

// Row is one service and minute.
type Row struct {
	Service string    `json:"service"`
	Minute  time.Time `json:"minute"`
	// Reported is what the service's agents wrote to their spools; nil when none of its
	// heartbeats in the range carries per-minute counts (an OTLP service, an older agent).
	Reported *int64 `json:"reported"`
	// Shipped is the distinct spans in mercury.spans; Duplicates the further copies a
	// shipper retry produced (harmless: the store is idempotent).
	Shipped    int64 `json:"shipped"`
	Duplicates int64 `json:"duplicates,omitempty"`
	Stored     int64 `json:"stored"`
	// ShippedUnits is the weight (1/sample rate, in 1/1024 span) of every record in the
	// topic, duplicates included: the aggregator folds the records as they are, so this is
	// what AggregatedUnits must equal.
	ShippedUnits    int64 `json:"shipped_units"`
	AggregatedUnits int64 `json:"aggregated_units"`
	// Losses are the stages whose count is below the stage before, in pipeline order; the
	// first is where spans were lost. Surplus are stages above it (a topic trimmed by
	// retention, spans of hosts that report no minutes): listed, not failed.
	Losses  []Gap `json:"losses,omitempty"`
	Surplus []Gap `json:"surplus,omitempty"`
}

// Gap is a difference at a stage, in spans (aggregated: weighted units / 1024).
type Gap struct {
	Stage string  `json:"stage"`
	Spans float64 `json:"spans"`
}

// LostAt is the first stage that lost spans, "" when none did.
func (r *Row) LostAt() string {
	if len(r.Losses) == 0 {
		return ""
	}
	return r.Losses[0].Stage
}

// Report is an audit of [From, To), whole minutes.
type Report struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Rows are every service and minute with a span at some stage, by service then minute.
	Rows []Row `json:"rows"`
	// Missing is the rows that lost spans.
	Missing int `json:"missing"`
	// Records of mercury.spans and mercury.heartbeats that did not decode (the collector
	// dead-letters such spans): not counted anywhere.
	UndecodableSpans      int64 `json:"undecodable_spans,omitempty"`
	UndecodableHeartbeats int64 `json:"undecodable_heartbeats,omitempty"`
	// Warnings say where a count may be short for a reason the audit cannot see past (a
	// topic's retention removed records of the window).
	Warnings []string `json:"warnings,omitempty"`
}

// ErrInvalidRange is returned for a range the audit refuses.
var ErrInvalidRange = errors.New("reconcile: invalid range")

// Align widens [from, to) to whole minutes and checks it: from before to, at most MaxRange.
func Align(from, to time.Time) (time.Time, time.Time, error) {
	if from.IsZero() || to.IsZero() {
		return from, to, fmt.Errorf("%w: from and to are required", ErrInvalidRange)
	}
	from, to = from.UTC().Truncate(time.Minute), to.UTC()
	if t := to.Truncate(time.Minute); !t.Equal(to) {
		to = t.Add(time.Minute)
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("%w: from %s is not before to %s", ErrInvalidRange, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if to.Sub(from) > MaxRange {
		return from, to, fmt.Errorf("%w: %s is longer than %s: audit it in parts", ErrInvalidRange, to.Sub(from), MaxRange)
	}
	return from, to, nil
}

type key struct {
	service string
	minute  int64 // Unix seconds
}

// counts is one row while it is counted.
type counts struct {
	reported                    int64
	shipped, duplicates, stored int64
	shippedUnits, aggregated    int64
}

// Run audits [from, to) (widened to whole minutes).
func Run(ctx context.Context, cfg Config, from, to time.Time) (*Report, error) {
	cfg.defaults()
	from, to, err := Align(from, to)
	if err != nil {
		return nil, err
	}
	if cfg.Traces == nil || cfg.Metrics == nil || len(cfg.Bus.Brokers) == 0 {
		return nil, errors.New("reconcile: brokers, a trace store and a metric store are required")
	}
	rep := &Report{From: from, To: to}
	rows := map[key]*counts{}
	row := func(service string, minute int64) *counts {
		k := key{service, minute}
		c := rows[k]
		if c == nil {
			c = &counts{}
			rows[k] = c
		}
		return c
	}
	lo, hi := from.UnixNano(), to.UnixNano()
	within := func(unixNano int64) bool { return unixNano >= lo && unixNano < hi }
	readFrom, readTo := from.Add(-cfg.Skew), to.Add(cfg.Lateness)

	reporting, badBeats, warnings, err := countHeartbeats(ctx, cfg.Bus, readFrom, readTo, from.Unix(), to.Unix(), row)
	rep.UndecodableHeartbeats, rep.Warnings = badBeats, warnings
	if err != nil {
		return nil, err
	}
	type spanKey struct {
		trace schemas.TraceID
		span  schemas.SpanID
	}
	seen := map[spanKey]struct{}{}
	var sp schemas.Span
	warnings, err = readTopic(ctx, cfg.Bus, bus.TopicSpans, readFrom, readTo, func(value []byte) {
		if err := schemas.Unmarshal(value, &sp); err != nil {
			rep.UndecodableSpans++
			return
		}
		if !within(sp.StartUnixNano) {
			return
		}
		c := row(sp.Service, tracestore.MinuteOf(sp.StartUnixNano))
		c.shippedUnits += metric.Weight(sp.SampleRate)
		k := spanKey{sp.TraceID, sp.SpanID}
		if _, dup := seen[k]; dup {
			c.duplicates++
			return
		}
		seen[k] = struct{}{}
		c.shipped++
	})
	rep.Warnings = append(rep.Warnings, warnings...)
	if err != nil {
		return nil, err
	}
	stored, err := cfg.Traces.CountSpans(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("reconcile: trace store: %w", err)
	}
	for _, s := range stored {
		row(s.Service, s.Minute).stored += s.Spans
	}
	if err := countAggregated(ctx, cfg.Metrics, from, to, row); err != nil {
		return nil, err
	}

	for k, c := range rows {
		r := Row{Service: k.service, Minute: time.Unix(k.minute, 0).UTC(), Shipped: c.shipped, Duplicates: c.duplicates,
			Stored: c.stored, ShippedUnits: c.shippedUnits, AggregatedUnits: c.aggregated}
		if reporting[k.service] {
			n := c.reported
			r.Reported = &n
			compare(&r, StageShipped, float64(c.reported), float64(c.shipped))
		}
		compare(&r, StageStored, float64(c.shipped), float64(c.stored))
		compare(&r, StageAggregated, float64(c.shippedUnits)/metric.Units, float64(c.aggregated)/metric.Units)
		if len(r.Losses) > 0 {
			rep.Missing++
		}
		rep.Rows = append(rep.Rows, r)
	}
	slices.SortFunc(rep.Rows, func(a, b Row) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), a.Minute.Compare(b.Minute))
	})
	return rep, nil
}

// compare records a loss or a surplus at stage, whose count is got against the previous
// stage's want.
func compare(r *Row, stage string, want, got float64) {
	switch {
	case got < want:
		r.Losses = append(r.Losses, Gap{Stage: stage, Spans: want - got})
	case got > want:
		r.Surplus = append(r.Surplus, Gap{Stage: stage, Spans: got - want})
	}
}

// countAggregated sums the minute points of every operation series (production and dyed):
// each span counts in exactly one of them; edge series count client calls a second time
// and are left out.
func countAggregated(ctx context.Context, ms metricstore.Store, from, to time.Time, row func(string, int64) *counts) error {
	for _, dyed := range []bool{false, true} {
		series, err := ms.Series(ctx, metricstore.Filter{Dyed: dyed}, from, to)
		if err != nil {
			return fmt.Errorf("reconcile: metric store: %w", err)
		}
		for _, s := range series {
			err := ms.Range(ctx, s.ID, from, to, func(p *metricstore.Point) error {
				row(s.Labels.Service, p.Minute).aggregated += p.Stats.Count
				return nil
			})
			if err != nil {
				return fmt.Errorf("reconcile: metric store: series %s: %w", s.ID, err)
			}
		}
	}
	return nil
}
