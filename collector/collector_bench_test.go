package collector_test

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/collector"
	"github.com/mercury-apm/mercury/internal/cputime"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// BenchmarkCollectorPebble drains spans pre-produced to the in-process broker into embedded
// Pebble: fetch, decode, write rows and index with Sync durability, commit. One op = one span.
// MERCURY_BENCH_TRACES sets the traces produced (10 spans each; default 20,000).
func BenchmarkCollectorPebble(b *testing.B) {
	traces := 20000
	if v, err := strconv.Atoi(os.Getenv("MERCURY_BENCH_TRACES")); err == nil && v > 0 {
		traces = v
	}
	cfg, _ := startBroker(b)
	produce(b, cfg, traces)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db, err := pebblestore.Open(b.TempDir(), pebblestore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		c, err := collector.New(collector.Config{Bus: cfg, Group: "bench-" + strconv.Itoa(i), // a fresh group per run
			Store: tracestore.New(db, db), BatchSize: 5000, Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		cpuBefore := cputime.Used()
		start := time.Now()
		b.StartTimer()
		go func() { done <- c.Run(ctx) }()
		for c.Stats().Spans < int64(traces*spansPerTrace) {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		elapsed := time.Since(start)
		cpu := cputime.Used() - cpuBefore
		cancel()
		<-done
		db.Close()
		n := float64(traces * spansPerTrace)
		b.ReportMetric(n/elapsed.Seconds(), "spans/s")
		b.ReportMetric(cpu.Seconds()/n*1e5, "cpu-s/100k-spans")
		b.StartTimer()
	}
}
