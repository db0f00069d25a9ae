package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/ship"
	"github.com/mercury-apm/mercury/aggregator"
	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/collector"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/internal/testproc"
	"github.com/mercury-apm/mercury/reconcile"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// droppingStore acknowledges every span but stores none of those drop selects: a trace store
// that loses writes.
type droppingStore struct {
	*pebblestore.Store
	drop    func(*schemas.Span) bool
	mu      sync.Mutex
	dropped map[serviceMinute]int64
}

type serviceMinute struct {
	service string
	minute  int64 // Unix seconds
}

func (d *droppingStore) WriteSpans(ctx context.Context, spans []schemas.Span) error {
	d.mu.Lock()
	kept := make([]schemas.Span, 0, len(spans))
	for i := range spans {
		if d.drop(&spans[i]) {
			d.dropped[serviceMinute{spans[i].Service, tracestore.MinuteOf(spans[i].StartUnixNano)}]++
			continue
		}
		kept = append(kept, spans[i])
	}
	d.mu.Unlock()
	return d.Store.WriteSpans(ctx, kept)
}

func (d *droppingStore) droppedSoFar() map[serviceMinute]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.dropped)
}

// auditRun runs agents for api and order through their spools, shippers, the embedded broker,
// the collector (into a store that drops what drop selects, though the collector's writes
// succeed) and both aggregator phases, until every span the agents wrote has been
// aggregated; then stops the pipeline so `mercury audit` can open the data directory. It
// returns the directory, the broker's address, the range the spans are in and what the store
// dropped, by minute.
func auditRun(t *testing.T, drop func(*schemas.Span) bool) (dir, brokerAddr string, from, to time.Time, dropped map[serviceMinute]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir = t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	b, err := broker.New(ctx, broker.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	bc := bus.Config{Brokers: []string{b.Addr()}}
	traces, err := pebblestore.Open(filepath.Join(dir, "traces"), pebblestore.Options{CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ds := &droppingStore{Store: traces, drop: drop, dropped: map[serviceMinute]int64{}}
	ms, err := storage.OpenMetrics(ctx, storage.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	tel := daemon.Telemetry{Logger: quiet}
	col, err := collector.New(collector.Config{Telemetry: tel, Bus: bc, Store: tracestore.New(ds, ds), BatchWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := aggregator.New(aggregator.Config{Telemetry: tel, Phase: 1, Bus: bc, FlushInterval: 200 * time.Millisecond, Idle: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := aggregator.New(aggregator.Config{Telemetry: tel, Phase: 2, Bus: bc, Store: ms, FlushInterval: 100 * time.Millisecond, Idle: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	components := []daemon.Component{col, p1, p2}
	from = time.Now()
	past, written := producePast(t, ctx, bc, from.Truncate(time.Minute).Add(-10*time.Minute))
	from = from.Truncate(time.Minute).Add(-10 * time.Minute)
	for i, svc := range []string{"api", "order"} {
		spool := filepath.Join(dir, "spool-"+svc)
		a, err := agent.New(agent.Config{Service: svc, Domain: "shop", SpoolDir: spool, FlushInterval: 20 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		n := 200 + 100*i
		for j := 0; j < n; j++ {
			_, s := a.StartSpan(context.Background(), fmt.Sprintf("op%d", j%3))
			s.End()
		}
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
		written += a.Stats().SpansWritten
		sh, err := ship.New(ship.Config{Spool: spool, Bus: bc, Logger: quiet, Linger: time.Millisecond, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		components = append(components, sh)
	}
	to = time.Now()
	if written != 500+past {
		t.Fatalf("agents wrote %d spans, want %d", written, 500+past)
	}
	g := daemon.NewGroup(ctx)
	for i, c := range components {
		g.Go(fmt.Sprint("component ", i), c.Run)
	}
	cfg := reconcile.Config{Bus: bc, Traces: ds, Metrics: ms}
	testproc.Eventually(t, "every written span shipped, stored or dropped, and aggregated", time.Minute, func() (bool, string) {
		rep, err := reconcile.Run(ctx, cfg, from, to)
		if err != nil {
			return false, err.Error()
		}
		var reported, shipped, stored int64
		for _, r := range rep.Rows {
			if r.Reported == nil || r.ShippedUnits != r.AggregatedUnits {
				return false, fmt.Sprintf("%+v", r)
			}
			reported, shipped, stored = reported+*r.Reported, shipped+r.Shipped, stored+r.Stored
		}
		var lost int64
		for _, n := range ds.droppedSoFar() {
			lost += n
		}
		return reported == written && shipped == written && stored+lost == written, fmt.Sprintf("reported %d shipped %d stored %d dropped %d", reported, shipped, stored, lost)
	})
	g.Stop()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := ms.Close(); err != nil {
		t.Fatal(err)
	}
	if err := traces.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, b.Addr(), from, to, ds.droppedSoFar()
}

// producePast writes what a host of service payment would have shipped ten minutes ago:
// spans over four minutes, from a minute's first nanosecond to its last, one sampled at
// 1/4, one shipped twice (a shipper retry), and the heartbeats counting them per minute,
// split over two heartbeats. It returns the distinct spans.
func producePast(t *testing.T, ctx context.Context, bc bus.Config, base time.Time) (int64, int64) {
	t.Helper()
	w, err := bus.NewWriter(bc, bus.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	var msgs []kafka.Message
	beats := []map[string]int64{{}, {}}
	var n int64
	for k := 0; k < 4; k++ {
		minute := base.Add(time.Duration(k) * time.Minute)
		for j, at := range []time.Duration{0, 7 * time.Second, 31 * time.Second, time.Minute - 1} {
			sp := schemas.Span{TraceID: schemas.TraceID{0xa0, byte(k), byte(j)}, SpanID: schemas.SpanID{1}, Domain: "shop", Service: "payment",
				Operation: "POST /pay", Kind: schemas.KindServer, Host: "pay-1", StartUnixNano: minute.Add(at).UnixNano(),
				DurationNano: int64(time.Millisecond), SampleRate: 1}
			if k == 2 && j == 1 {
				sp.SampleRate = 0.25
			}
			v, err := schemas.Marshal(&sp)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, kafka.Message{Topic: bus.TopicSpans, Key: sp.TraceID[:], Value: v})
			if k == 0 && j == 2 {
				msgs = append(msgs, msgs[len(msgs)-1])
			}
			beats[j%2][schemas.StatMinutePrefix+fmt.Sprint(minute.Unix())]++
			n++
		}
	}
	for i, stats := range beats {
		hb := schemas.Heartbeat{TimeUnixNano: base.Add(time.Duration(4+i) * time.Minute).UnixNano(), Domain: "shop", Service: "payment",
			Host: "pay-1", PID: 7, AgentVersion: agent.Version, StartedUnixNano: base.Add(-time.Hour).UnixNano(), Stats: stats}
		v, err := schemas.Marshal(&hb)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Topic: bus.TopicHeartbeats, Key: []byte(hb.Service), Value: v})
		if i == 1 {
			msgs = append(msgs, msgs[len(msgs)-1]) // a heartbeat shipped twice counts once
		}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	return n, n
}

func auditArgs(dir, brokerAddr string, from, to time.Time, more ...string) []string {
	return append([]string{"--brokers", brokerAddr, "--data", dir,
		"--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano)}, more...)
}

// TestAuditFindsTheMinutesDroppedAtTheStore: the store acknowledges every write but drops
// order's spans of the first minute it sees them in, payment's spans of two past minutes and
// one sampled span of a third. `mercury audit` lists exactly those four service-minutes, lost
// at the stored stage by exactly what was dropped, and fails; every other row agrees at every
// stage (a shipped duplicate is no loss).
func TestAuditFindsTheMinutesDroppedAtTheStore(t *testing.T) {
	var mu sync.Mutex
	chosen := int64(-1)
	dir, addr, from, to, dropped := auditRun(t, func(s *schemas.Span) bool {
		switch s.Service {
		case "order":
			mu.Lock()
			defer mu.Unlock()
			m := tracestore.MinuteOf(s.StartUnixNano)
			if chosen < 0 {
				chosen = m
			}
			return m == chosen
		case "payment": // producePast's minute k is in the trace id
			k := s.TraceID[1]
			return k == 1 || k == 3 || s.SampleRate == 0.25
		}
		return false
	})
	if len(dropped) != 4 {
		t.Fatalf("dropped %v, want 4 service-minutes", dropped)
	}

	var out strings.Builder
	err := auditCommand(context.Background(), &out, auditArgs(dir, addr, from, to, "--json"))
	if err == nil || !strings.Contains(err.Error(), "4 service-minute(s) lost spans") {
		t.Fatalf("audit: %v, want a failure naming four lost minutes\n%s", err, out.String())
	}
	var rep reconcile.Report
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	// api, order (two rows if its spans crossed a minute), payment's four minutes.
	if rep.Missing != 4 || len(rep.Rows) < 6 {
		t.Fatalf("missing %d of %d rows, want 4 of 6 or more\n%s", rep.Missing, len(rep.Rows), out.String())
	}
	duplicates := int64(0)
	for _, r := range rep.Rows {
		n := dropped[serviceMinute{r.Service, r.Minute.Unix()}]
		agrees := r.Reported != nil && *r.Reported == r.Shipped && r.ShippedUnits == r.AggregatedUnits && len(r.Surplus) == 0
		switch {
		case n > 0 && (!agrees || r.LostAt() != reconcile.StageStored || len(r.Losses) != 1 || r.Losses[0].Spans != float64(n) || r.Shipped-r.Stored != n):
			t.Errorf("a dropped minute: %+v, want %d lost at stored", r, n)
		case n == 0 && (!agrees || len(r.Losses) != 0 || r.Shipped != r.Stored):
			t.Errorf("a minute that lost nothing: %+v", r)
		}
		duplicates += r.Duplicates
	}
	if duplicates != 1 {
		t.Errorf("%d duplicates, want the one shipped twice", duplicates)
	}

	out.Reset()
	err = auditCommand(context.Background(), &out, auditArgs(dir, addr, from, to))
	table := out.String()
	for k, n := range dropped {
		want := fmt.Sprintf("%s %s lost at stored: stored -%d", k.service, time.Unix(k.minute, 0).UTC().Format("2006-01-02 15:04"), n)
		if err == nil || !strings.Contains(table, want) || !strings.Contains(table, "missing: 4 of") {
			t.Fatalf("table (err %v) lacks %q:\n%s", err, want, table)
		}
	}
}

// TestAuditOfACleanRun: nothing dropped, nothing missing, exit status 0.
func TestAuditOfACleanRun(t *testing.T) {
	dir, addr, from, to, _ := auditRun(t, func(*schemas.Span) bool { return false })
	var out strings.Builder
	if err := auditCommand(context.Background(), &out, auditArgs(dir, addr, from, to)); err != nil {
		t.Fatalf("audit: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "nothing missing") || !strings.Contains(out.String(), "api") || !strings.Contains(out.String(), "order") {
		t.Fatalf("table:\n%s", out.String())
	}
}

// Bad ranges are refused before anything is opened.
func TestAuditRefusesBadRanges(t *testing.T) {
	for args, want := range map[string]string{
		"--to 2026-12-04T10:00:00Z":                               "usage",
		"--from yesterday":                                        "want RFC 3339",
		"--from 2026-12-04T10:00:00Z --to 2026-12-04T09:00:00Z":   "not before",
		"--from 2026-12-04T00:00:00Z --to 2026-12-04T09:00:00Z":   "longer than 6h",
		"--from 2026-12-04T10:00:00Z --to 2026-12-04T10:00:00Z":   "not before",
		"--from 2026-12-04T10:00:00Z --to 2026-12-04T11:00:00Z x": "unexpected arguments",
		"--from -1h --to -2h --data /nonexistent":                 "not before",
	} {
		var out strings.Builder
		err := auditCommand(context.Background(), &out, strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("audit %s: %v, want an error containing %q", args, err, want)
		}
	}
}
