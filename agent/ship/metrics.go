package ship

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// The Prometheus figures are read from Stats() at scrape time, so the metrics, the heartbeat
// stats and the tests all see the same numbers and the hot path pays only atomic adds.

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("mercury_shipper_"+name, help, []string{"stream"}, nil)
}

var (
	descRecords    = desc("records_total", "Records acknowledged by the broker.")
	descBytes      = desc("bytes_total", "Message value bytes acknowledged by the broker.")
	descLagRecords = desc("lag_records", "Records on disk not yet acknowledged.")
	descLagBytes   = desc("lag_bytes", "Segment block bytes on disk not yet acknowledged.")
	descSendErrors = desc("send_errors_total", "Failed send attempts (each is retried).")
	descDups       = desc("possible_duplicates_total", "Records that may have been produced twice (a send retried after an unclear failure, or a restart after an unacknowledged batch).")
	descSegments   = desc("segments", "Spool segment files on disk.")
	descSkipped    = desc("skipped_segments_total", "Whole segments (or the rest of one) skipped: vanished, unreadable header or read error.")
	descSkipBlocks = desc("skipped_blocks_total", "Damaged spool blocks stepped over; reading resumed at the next good block.")
	descSkipBytes  = desc("skipped_bytes_total", "Bytes of the damaged blocks stepped over.")
	descSkipRecs   = desc("skipped_records_total", "Records the damaged blocks' headers declared, where a header was readable.")
	descDropped    = desc("dropped_records_total", "Records larger than the maximum message size, dropped.")
	descCursorAge  = desc("cursor_age_seconds", "Time since the cursor last advanced while records wait on disk; 0 when caught up.")
)

type collector struct{ s *Shipper }

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, name := range c.s.streamNames() {
		v := st.Streams[name]
		m := func(d *prometheus.Desc, t prometheus.ValueType, x float64) {
			ch <- prometheus.MustNewConstMetric(d, t, x, name)
		}
		m(descRecords, prometheus.CounterValue, float64(v.Records))
		m(descBytes, prometheus.CounterValue, float64(v.Bytes))
		m(descLagRecords, prometheus.GaugeValue, float64(v.LagRecords))
		m(descLagBytes, prometheus.GaugeValue, float64(v.LagBytes))
		m(descSendErrors, prometheus.CounterValue, float64(v.SendErrors))
		m(descDups, prometheus.CounterValue, float64(v.PossibleDuplicates))
		m(descSegments, prometheus.GaugeValue, float64(v.Segments))
		m(descSkipped, prometheus.CounterValue, float64(v.SkippedSegments))
		m(descSkipBlocks, prometheus.CounterValue, float64(v.SkippedBlocks))
		m(descSkipBytes, prometheus.CounterValue, float64(v.SkippedBytes))
		m(descSkipRecs, prometheus.CounterValue, float64(v.SkippedRecords))
		m(descDropped, prometheus.CounterValue, float64(v.DroppedRecords))
		m(descCursorAge, prometheus.GaugeValue, v.CursorAge.Seconds())
	}
}

// Collector exposes the shipper's figures to a Prometheus registry (an in-process shipper
// registers it with the host's registry).
func (s *Shipper) Collector() prometheus.Collector { return collector{s} }

// Routes mounts GET /api/v1/ship/stats: the figures as JSON, and the failure once Run failed.
func (s *Shipper) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/ship/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		body := map[string]any{"status": "ok", "stats": s.Stats().Map()}
		if err := s.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			body["status"], body["error"] = "failed", err.Error()
		}
		_ = json.NewEncoder(w).Encode(body)
	})
}

// Ready is nil until Run failed.
func (s *Shipper) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}
