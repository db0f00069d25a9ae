package aggregator_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/aggregator"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// A service with more operations than its daily series cap keeps the cap's worth of series;
// the rest is counted in its __other__ series, nothing is lost, and after a restart the
// series admitted before stay admitted (the store's catalog says which).
func TestSeriesCapOverflowsIntoOther(t *testing.T) {
	cfg := startBroker(t)
	store := openStore(t)
	spans := func(ops, offset int) []kafka.Message {
		var msgs []kafka.Message
		for i := range 400 {
			s := schemas.Span{Domain: "shop", Service: "noisy", Operation: fmt.Sprintf("GET /u/%d", offset+i%ops), Kind: schemas.KindServer,
				Host: "h1", StartUnixNano: base.Add(time.Duration(i) * time.Millisecond).UnixNano(), DurationNano: 1e6, SampleRate: 1}
			if i%10 == 0 {
				s.Service, s.Operation = "calm", fmt.Sprintf("GET /%d", i%3)
			}
			s.TraceID[0], s.TraceID[1], s.TraceID[2] = byte(i), byte(i>>8), byte(offset)
			v, _ := schemas.Marshal(&s)
			msgs = append(msgs, kafka.Message{Key: []byte(s.TraceID.String()), Value: v})
		}
		return msgs
	}
	runBoth := func() *prometheus.Registry {
		tel := daemon.Telemetry{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
		ctx, cancel := context.WithCancel(context.Background())
		g := daemon.NewGroup(ctx)
		for phase := 1; phase <= 2; phase++ {
			a, err := aggregator.New(aggregator.Config{Telemetry: tel, Phase: phase, Bus: cfg, Store: store, MaxSeries: 12, FlushInterval: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			g.Go(fmt.Sprint("phase ", phase), a.Run)
		}
		waitCaughtUp(t, cfg, time.Minute)
		cancel()
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		return tel.Registry
	}
	// count sums a service's stored spans, by series: own ones and __other__.
	count := func(service string) (own map[string]int64, other int64) {
		own = map[string]int64{}
		ss, err := store.Series(context.Background(), metricstore.Filter{Service: service}, base.Add(-time.Hour), base.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			var n int64
			if err := store.Range(context.Background(), s.ID, base.Add(-time.Hour), base.Add(time.Hour), func(p *metricstore.Point) error {
				n += p.Stats.Count
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if s.Labels.Operation == metric.Other {
				other += n
			} else {
				own[s.Labels.Operation] += n
			}
		}
		return own, other
	}
	check := func(noisySpans int64) map[string]int64 {
		t.Helper()
		own, other := count("noisy")
		var total int64
		for _, n := range own {
			total += n
		}
		if len(own) > 12 || len(own) < 6 || other == 0 || total+other != noisySpans*metric.Units {
			t.Fatalf("noisy: %d series of its own (want 6..12: two per partition at most), %d units in __other__, %d+%d units in all, want %d spans",
				len(own), other, total, other, noisySpans)
		}
		if calm, calmOther := count("calm"); len(calm) != 3 || calmOther != 0 {
			t.Fatalf("calm, under its cap: %v and %d in __other__", calm, calmOther)
		}
		return own
	}
	produceTo(t, cfg, bus.TopicSpans, spans(40, 0)...)
	reg := runBoth()
	if got := counter(t, reg, "mercury_aggregator_phase2_overflow_partials_total"); got == 0 {
		t.Fatal("no partial overflowed")
	}
	before := check(360)
	// Restarted, with new operations and the old ones again: the admitted series are the
	// stored ones, so the old ones keep their series and the new ones overflow.
	produceTo(t, cfg, bus.TopicSpans, spans(40, 0)...)
	produceTo(t, cfg, bus.TopicSpans, spans(40, 1000)...)
	runBoth()
	after := check(3 * 360)
	for op := range after {
		if _, ok := before[op]; !ok {
			t.Errorf("operation %s was admitted after the restart although the cap was full", op)
		}
	}
}
