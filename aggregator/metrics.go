package aggregator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of one phase; names carry the phase so both can share a registry (mercury up).
type metrics struct {
	lag        *prometheus.GaugeVec // per input partition
	open       *prometheus.GaugeVec // phase 1: aggregates held; phase 2: points held
	retries    prometheus.Counter
	records    prometheus.Counter // spans (phase 1) or partials (phase 2) read
	bad        prometheus.Counter // undecodable spans / bad partials
	late       prometheus.Counter // phase 1: spans behind a closed window; phase 2: upserts of stored minutes
	tooLate    prometheus.Counter // phase 1: spans past the lateness, dropped
	future     prometheus.Counter // phase 1: spans from too far in the future, dropped
	overflow   prometheus.Counter // spans (phase 1) or partials (phase 2) counted under __other__
	duplicates prometheus.Counter // phase 2: copies dropped
	emitted    prometheus.Counter // partials (phase 1) or points (phase 2) written out
	flushes    prometheus.Counter
	series     *prometheus.GaugeVec // phase 1: series in the current range; phase 2: series held
}

func newMetrics(phase int) *metrics {
	ns := fmt.Sprintf("mercury_aggregator_phase%d_", phase)
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: ns + name, Help: help})
	}
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + name, Help: help}, []string{"partition"})
	}
	m := &metrics{
		lag:     g("lag", "Records behind the end of the input partition."),
		retries: c("retries_total", "Broker or store calls retried after an error."),
		flushes: c("flushes_total", "Flushes (phase 1: ranges emitted; phase 2: store writes committed)."),
	}
	if phase == 1 {
		m.open = g("open_windows", "Series × window aggregates held in the current range.")
		m.series = g("series", "Distinct series in the current range.")
		m.records = c("spans_total", "Spans read.")
		m.bad = c("undecodable_total", "Records of mercury.spans that are no span (skipped; the collector dead-letters them).")
		m.late = c("late_spans_total", "Spans that arrived after their window's end had passed the watermark, still counted.")
		m.tooLate = c("too_late_spans_total", "Spans later than the lateness bound, dropped.")
		m.future = c("future_spans_total", "Spans starting more than the allowed skew ahead of this host's clock, dropped.")
		m.overflow = c("overflow_spans_total", "Spans counted under a service's __other__ series (series cap).")
		m.emitted = c("partials_total", "Partials emitted to mercury.metrics.20s.")
	} else {
		m.open = g("open_points", "Minute points held in memory.")
		m.series = g("series", "Distinct series among the points held.")
		m.records = c("partials_total", "Partials read.")
		m.bad = c("bad_partials_total", "Partials that cannot be merged, dead-lettered.")
		m.late = c("late_upserts_total", "Upserts of minutes stored before (revision > 1).")
		m.duplicates = c("duplicate_partials_total", "Copies of merged partials dropped (replays).")
		m.overflow = c("overflow_partials_total", "Partials of series beyond a service's daily cap, merged into its __other__ series.")
		m.emitted = c("points_total", "Points upserted and emitted to mercury.metrics.1m.")
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	out := []prometheus.Collector{m.lag, m.open, m.series, m.retries, m.records, m.bad, m.late, m.emitted, m.flushes}
	for _, c := range []prometheus.Counter{m.tooLate, m.future, m.overflow, m.duplicates} {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}
