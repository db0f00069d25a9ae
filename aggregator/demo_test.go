package aggregator_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/collector"
	"github.com/mercury-apm/mercury/demo"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/query/metrics"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// The metrics API's count for a demo service and minute is the number of that service's
// server spans the collector stored for that minute: the two pipelines read the same topic
// and must agree span for span.
func TestDemoCountsMatchTheTraceStore(t *testing.T) {
	cfg := startBroker(t)
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	traceDB, err := pebblestore.Open(t.TempDir(), pebblestore.Options{CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer traceDB.Close()
	metricDB := openStore(t)
	tel := daemon.Telemetry{Logger: log, Registry: prometheus.NewRegistry()}
	col, err := collector.New(collector.Config{Telemetry: tel, Bus: cfg, Store: tracestore.New(traceDB, traceDB)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	g := daemon.NewGroup(rctx)
	g.Go("collector", col.Run)
	stop := run(t, cfg, metricDB, 200*time.Millisecond)

	d, err := demo.New(ctx, demo.Config{SpoolRoot: t.TempDir(), Interval: -1, Bus: cfg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	start := time.Now()
	const orders = 150
	for i := range orders {
		if _, err := d.Order(ctx, int64(500000+i), "u1"); err != nil {
			t.Fatal(err)
		}
	}
	end := time.Now()
	// serverSpans counts the trace store's server spans of order, by minute.
	serverSpans := func() (map[int64]float64, int) {
		refs, err := traceDB.Search(ctx, tracestore.Query{Service: "order", Start: start.Add(-time.Minute), End: end.Add(time.Minute), Limit: tracestore.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]tracestore.TraceID, len(refs))
		for i, r := range refs {
			ids[i] = r.TraceID
		}
		got, err := traceDB.GetTraces(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		byMinute, total := map[int64]float64{}, 0
		for _, spans := range got {
			for _, s := range spans {
				if s.Service == "order" && s.Kind == schemas.KindServer && !s.Dyed {
					byMinute[time.Unix(0, s.StartUnixNano).Truncate(time.Minute).Unix()]++
					total++
				}
			}
		}
		return byMinute, total
	}
	// The agents flush and ship in the background: wait until the collector stored every
	// order, then until the aggregator has committed everything the topic holds.
	deadline := time.Now().Add(time.Minute)
	want, total := serverSpans()
	for ; total < orders && time.Now().Before(deadline); want, total = serverSpans() {
		time.Sleep(50 * time.Millisecond)
	}
	waitCaughtUp(t, cfg, time.Minute)
	stop()
	cancel()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if total != orders {
		t.Fatalf("the trace store holds %d server spans of order, want one per order (%d)", total, orders)
	}
	res, err := metrics.Run(ctx, metricDB, metrics.Query{Filter: metricstore.Filter{Service: "order"}, Kind: schemas.KindServer,
		Metric: "count", Start: start.Truncate(time.Minute), End: end.Truncate(time.Minute).Add(time.Minute), Step: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Points {
		if *p.V != want[p.T.Unix()] {
			t.Errorf("minute %s: the metrics API counts %v server spans of order, the trace store holds %v", p.T.Format(time.TimeOnly), *p.V, want[p.T.Unix()])
		}
	}
}
