package reliability

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/aggregator/oracle"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/esstore/esfake"
	"github.com/mercury-apm/mercury/storage/hbasestore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// lateness is phase 1's default: the drill's spans are seconds old at most, so none is too late.
const lateness = 30 * time.Minute

// check compares what reached the stores with what the services sent and the agents counted
// as dropped, and records every figure and verdict in the report.
func check(t *testing.T, ctx context.Context, rep *report, cfg bus.Config, svcs []*service, es *esfake.Server, hbURL string, hook *webhook) {
	t.Helper()
	sent := map[spanKey]int{} // span → index of its service
	for i, s := range svcs {
		for _, k := range s.ended {
			sent[k] = i
		}
		rep.ended += len(s.ended)
	}

	// What was shipped: mercury.spans in full, each record folded into the batch oracle.
	o := oracle.New(lateness)
	shipped := map[spanKey]int{}
	var records, unknown int
	traces := map[schemas.TraceID]bool{}
	err := readTopic(ctx, cfg, bus.TopicSpans, func(p int, v []byte) error {
		var s schemas.Span
		if err := schemas.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("a record of %s does not decode: %w", bus.TopicSpans, err)
		}
		records++
		k := keyOf(s.TraceID, s.SpanID)
		if _, ok := sent[k]; !ok {
			unknown++
		}
		shipped[k]++
		traces[s.TraceID] = true
		o.Add(p, &s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rep.records, rep.distinct = records, len(shipped)
	rep.verdict(t, unknown == 0, "every record in %s is a span a service sent (%d are not)", bus.TopicSpans, unknown)

	// Events: the bursts' exceptions, copies told apart by service, name and seq.
	type eventKey struct{ service, name, seq string }
	events := map[eventKey]bool{}
	perBurst := map[string]int{} // records, copies included: the alerter counts what it reads
	err = readTopic(ctx, cfg, bus.TopicEvents, func(_ int, v []byte) error {
		var ev schemas.Event
		if err := schemas.Unmarshal(v, &ev); err != nil {
			return fmt.Errorf("a record of %s does not decode: %w", bus.TopicEvents, err)
		}
		seq, _ := schemas.Get(ev.Attributes, "seq")
		events[eventKey{ev.Service, ev.Name, seq}] = true
		perBurst[ev.Name]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Accounting: per service, what was sent and is not in Kafka is exactly what its agent
	// counted as dropped (queue full while the disk stalled, block writes the full disk refused).
	for _, s := range svcs {
		missingSpans := 0
		for _, k := range s.ended {
			if shipped[k] == 0 {
				missingSpans++
			}
		}
		missingEvents := 0
		for name, n := range s.bursts {
			for seq := range n {
				if !events[eventKey{s.name, name, fmt.Sprint(seq)}] {
					missingEvents++
				}
			}
		}
		dropped, by := s.dropped()
		rep.services = append(rep.services, serviceFigures{name: s.name, ended: len(s.ended), missingSpans: missingSpans,
			missingEvents: missingEvents, dropped: by, slowest: s.slowest})
		rep.verdict(t, int64(missingSpans+missingEvents) == dropped,
			"%s: %d spans and %d events missing from Kafka, its agent counted %d dropped", s.name, missingSpans, missingEvents, dropped)
	}

	// The trace store: every shipped span once in the rows (HBase) and once in the index (ES).
	rows, err := hbasestore.New(ctx, hbasestore.Config{URL: hbURL})
	if err != nil {
		t.Fatal(err)
	}
	inRows := map[spanKey]int{}
	ids := make([]tracestore.TraceID, 0, len(traces))
	for id := range traces {
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		got, err := rows.GetTraces(ctx, ids[:n])
		if err != nil {
			t.Fatal(err)
		}
		for _, spans := range got {
			for _, s := range spans {
				inRows[keyOf(s.TraceID, s.SpanID)]++
			}
		}
		ids = ids[n:]
	}
	inIndex := map[spanKey]int{}
	badIDs := 0
	for _, idx := range es.Indices() {
		for _, id := range es.DocIDs(idx) {
			var k spanKey
			if b, err := hex.DecodeString(id); err != nil || len(b) != len(k) {
				badIDs++
				continue
			} else {
				copy(k[:], b)
			}
			inIndex[k]++
		}
	}
	var rowsWrong, indexWrong int
	for k := range shipped {
		if inRows[k] != 1 {
			rowsWrong++
		}
		if inIndex[k] != 1 {
			indexWrong++
		}
	}
	rep.rows, rep.docs = len(inRows), len(inIndex)
	rep.verdict(t, rowsWrong == 0 && len(inRows) == len(shipped),
		"trace rows (HBase): every shipped span exactly once (%d of %d are not; %d spans stored)", rowsWrong, len(shipped), len(inRows))
	rep.verdict(t, indexWrong == 0 && badIDs == 0 && len(inIndex) == len(shipped),
		"trace index (Elasticsearch): every shipped span exactly once (%d of %d are not; %d documents, %d foreign ids)", indexWrong, len(shipped), len(inIndex), badIDs)

	// Metrics: the minute points phase 2 stored equal the batch recomputation.
	ms, err := hbasestore.NewMetrics(ctx, hbasestore.MetricsConfig{URL: hbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	diffs, err := o.Diff(ctx, ms, rep.started.Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rep.points, rep.tooLate = o.Points(), o.TooLate
	for _, d := range diffs {
		t.Log(d)
	}
	rep.verdict(t, len(diffs) == 0 && o.TooLate == 0,
		"metric points (HBase): all %d equal the batch oracle over %s (%d differences)", o.Points(), bus.TopicSpans, len(diffs))

	// Alerts: one per burst that reached Kafka, counting all its records, notified.
	as, err := hbasestore.NewAlerts(ctx, hbasestore.AlertsConfig{URL: hbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	all, err := as.ListAlerts(ctx, alertstore.AlertFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	perName := map[string][]alertstore.Alert{}
	perKey := map[string][]alertstore.Alert{} // of the drill's metric rule
	for _, a := range all {
		switch {
		case a.Kind == alertstore.KindEvent:
			perName[a.Labels["name"]] = append(perName[a.Labels["name"]], a)
		case a.Kind == alertstore.KindMetric && a.Rule == drillRule:
			perKey[a.Key] = append(perKey[a.Key], a)
		default:
			rep.otherAlerts = append(rep.otherAlerts, fmt.Sprintf("%s, %s: %s", a.Kind, a.State, a.Summary))
		}
	}
	var lost, dup, miscounted, unnotified, stray int
	hook.mu.Lock()
	defer hook.mu.Unlock()
	for name, n := range perBurst {
		switch got := perName[name]; {
		case len(got) == 0:
			lost++
		case len(got) > 1:
			dup++
		case got[0].Count != int64(n):
			miscounted++
			t.Logf("alert %s counts %d, %d records of it in %s", name, got[0].Count, n, bus.TopicEvents)
		case hook.firing[got[0].ID] == 0:
			unnotified++
		}
		rep.alerts++
	}
	for name := range perName {
		if perBurst[name] == 0 {
			stray++
		}
	}
	metricDup, metricUnnotified := 0, 0
	for _, as := range perKey {
		if len(as) != 1 {
			metricDup++
		} else if hook.firing[as[0].ID] == 0 {
			metricUnnotified++
		}
	}
	rep.metricAlerts = len(perKey)
	rep.verdict(t, len(perKey) > 0 && metricDup == 0 && metricUnnotified == 0,
		"metric rule %s: exactly one alert per series it holds on, notified (%d series; %d with more than one alert, %d not notified)",
		drillRule, len(perKey), metricDup, metricUnnotified)
	rep.verdict(t, lost+dup+miscounted+unnotified+stray == 0,
		"alerts: one per exception burst in %s, counting its records, notified (%d bursts; lost %d, duplicated %d, miscounted %d, not notified %d, stray %d)",
		bus.TopicEvents, len(perBurst), lost, dup, miscounted, unnotified, stray)
}
