package aggregator_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/aggregator"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/cputime"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

var benchData = sync.OnceValue(func() *dataset { return generate(1_000_000, 3) })

// run starts both phases on cfg and store with the given flush interval (0: defaults).
func run(t testing.TB, cfg bus.Config, store metricstore.Store, flush time.Duration) (stop func()) {
	tel := daemon.Telemetry{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	ctx, cancel := context.WithCancel(context.Background())
	g := daemon.NewGroup(ctx)
	for phase := 1; phase <= 2; phase++ {
		c := aggregator.Config{Telemetry: tel, Phase: phase, Bus: cfg, Store: store, FlushInterval: flush}
		a, err := aggregator.New(c)
		if err != nil {
			t.Fatal(err)
		}
		g.Go(fmt.Sprint("phase ", phase), a.Run)
	}
	return func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Error(err)
		}
	}
}

func openStore(t testing.TB) *pebblestore.Store {
	s, err := pebblestore.Open(t.TempDir(), pebblestore.Options{CacheBytes: 64 << 20, MemTableBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkPipeline is the whole aggregator through the embedded broker: both phases from a
// million spans already in mercury.spans to every minute point stored and every input
// committed, with the default flush intervals (so the tail waits up to 2 s for the last flush).
func BenchmarkPipeline(b *testing.B) {
	d := benchData()
	b.ResetTimer() // generating the spans is not the aggregator's work
	var cpu time.Duration
	for range b.N {
		b.StopTimer()
		cfg := startBroker(b)
		produce(b, cfg, d.msgs)
		store := openStore(b)
		b.StartTimer()
		c0 := cputime.Used()
		stop := run(b, cfg, store, 0)
		waitCaughtUp(b, cfg, 5*time.Minute)
		cpu += cputime.Used() - c0
		b.StopTimer()
		stop()
	}
	b.ReportMetric(float64(len(d.msgs)*b.N)/b.Elapsed().Seconds(), "spans/s")
	// CPU of the whole process: both phases, the embedded broker, the store and GC.
	b.ReportMetric(float64(len(d.msgs)*b.N)/cpu.Seconds(), "spans/cpu-s")
}

// BenchmarkFreshness is how long a span takes, with the default flush intervals (2 s in
// phase 1, 1 s in phase 2), from being produced to being counted in a queryable minute
// point: the bound on how late after a minute's end its first point can be read.
func BenchmarkFreshness(b *testing.B) {
	cfg := startBroker(b)
	store := openStore(b)
	stop := run(b, cfg, store, 0)
	defer stop()
	w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicSpans})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.CloseWriter(w)
	ctx := context.Background()
	var worst time.Duration
	b.ResetTimer()
	for i := range b.N {
		now := time.Now()
		s := schemas.Span{Domain: "shop", Service: fmt.Sprintf("fresh%d", i), Operation: "GET /", Kind: schemas.KindServer,
			StartUnixNano: now.UnixNano(), DurationNano: 1e6, SampleRate: 1}
		s.TraceID[0], s.TraceID[1] = byte(i), byte(i>>8)
		v, _ := schemas.Marshal(&s)
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(s.TraceID.String()), Value: v}); err != nil {
			b.Fatal(err)
		}
		key := metricstore.Key{SeriesID: metricSeriesID(&s), Minute: now.Truncate(time.Minute).Unix()}
		for {
			got, err := store.Get(ctx, []metricstore.Key{key})
			if err != nil {
				b.Fatal(err)
			}
			if _, ok := got[key]; ok {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		worst = max(worst, time.Since(now))
	}
	b.ReportMetric(worst.Seconds(), "worst-s")
}
