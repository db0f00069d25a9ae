// Package agentprom exports a Mercury agent's own statistics to Prometheus, so a host that
// already serves /metrics sees whether its tracing keeps up (written vs dropped spans, queue
// length, spool size). It lives outside the agent core, which must not depend on client_golang.
//
//	reg.MustRegister(agentprom.NewCollector(a))
package agentprom

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/agent"
)

// Option configures the collector.
type Option func(*options)

type options struct{ labels prometheus.Labels }

// WithConstLabels adds labels to every metric: for a host running several agents.
func WithConstLabels(l prometheus.Labels) Option { return func(o *options) { o.labels = l } }

// Collector reads agent.Stats at scrape time; it keeps no state of its own, so the counters
// are exactly the agent's.
type Collector struct {
	a                                      *agent.Agent
	spans, events, beats, dropped, deleted *prometheus.Desc
	queue, spoolBytes, spoolSegments, info *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector for a's statistics.
func NewCollector(a *agent.Agent, opts ...Option) *Collector {
	var o options
	for _, f := range opts {
		f(&o)
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("mercury_agent_"+name, help, labels, o.labels)
	}
	return &Collector{
		a:             a,
		spans:         d("spans_written_total", "Spans the agent appended to its spool."),
		events:        d("events_written_total", "Events (exceptions, breaker transitions...) appended to the spool."),
		beats:         d("heartbeats_written_total", "Heartbeats appended to the spool."),
		dropped:       d("dropped_total", "Records dropped instead of blocking the host, by reason (queue_full: the writer lags; disk_error; closed; internal: an agent bug, logged).", "reason"),
		deleted:       d("spool_deleted_segments_total", "Spool segments deleted, unshipped, to keep the disk budget."),
		queue:         d("queue_length", "Spans waiting in memory for the writer."),
		spoolBytes:    d("spool_bytes", "Bytes the spool holds on disk."),
		spoolSegments: d("spool_segments", "Segment files the spool holds."),
		info:          d("info", "Agent version and the version of the dynamic config it runs; always 1.", "version", "config_version"),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.spans, c.events, c.beats, c.dropped, c.deleted, c.queue, c.spoolBytes, c.spoolSegments, c.info} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter(c.spans, st.SpansWritten)
	counter(c.events, st.EventsWritten)
	counter(c.beats, st.HeartbeatsWritten)
	counter(c.deleted, st.SpoolDeleted)
	for _, r := range slices.Sorted(maps.Keys(st.Dropped)) {
		counter(c.dropped, st.Dropped[r], r)
	}
	gauge(c.queue, st.Queued)
	gauge(c.spoolBytes, st.SpoolBytes)
	gauge(c.spoolSegments, st.SpoolSegments)
	gauge(c.info, 1, agent.Version, st.ConfigVersion)
}
