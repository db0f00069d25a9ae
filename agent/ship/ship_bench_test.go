package ship

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/cputime"
	"github.com/mercury-apm/mercury/schemas"
)

// BenchmarkShipSpans ships b.N spans from a spool of sealed segments (blocks of 500 spans,
// 40 blocks a segment) to the embedded broker (DataDir on local disk) with acks=all and the
// default shipper settings. CPU time is the whole process (shipper and broker) from rusage.
//
//	go test ./agent/ship -run '^$' -bench ShipSpans -benchmem -benchtime 1000000x
func BenchmarkShipSpans(b *testing.B) {
	spoolDir := b.TempDir()
	br := startBroker(b, b.TempDir(), "")
	defer br.Close()
	w := newSpoolWriter(b, spoolDir, StreamSpans, schemas.NameSpan)
	gen := newSpanGen(1)
	const per, blocksPerSeg = 500, 40
	var bytes int64
	for left, i := b.N, 0; left > 0; i++ {
		if i%blocksPerSeg == 0 {
			w.rotate()
		}
		n := min(left, per)
		bodies, _ := gen.bodies(n)
		for _, body := range bodies {
			bytes += int64(len(body))
		}
		w.block(bodies)
		left -= n
	}
	w.rotate() // seal the last data segment
	w.close()

	cfg := Config{Spool: spoolDir, Bus: bus.Config{Brokers: []string{br.Addr()}}, Streams: []string{StreamSpans}, Logger: quietLog()}
	if v, err := strconv.Atoi(os.Getenv("SHIP_BATCH")); err == nil {
		cfg.BatchRecords, cfg.BatchBytes = v, int64(v)*1000
	}
	if v, err := strconv.Atoi(os.Getenv("SHIP_INFLIGHT")); err == nil {
		cfg.InFlight = v
	}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ReportAllocs()
	b.SetBytes(bytes / int64(b.N))
	b.ResetTimer()
	cpu0, t0 := cputime.Used(), time.Now()
	go func() { done <- s.Run(ctx) }()
	for s.Stats().Records < int64(b.N) {
		time.Sleep(2 * time.Millisecond)
	}
	elapsed, cpu := time.Since(t0), cputime.Used()-cpu0
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "spans/s")
	b.ReportMetric(cpu.Seconds()/float64(b.N)*100000, "cpu-s/100k-spans")
}
