package agent

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

// BenchmarkWriter is the background half on one goroutine: mask, encode and append a span to
// real spool files (flushed in 64 KiB blocks, rotated at 16 MiB). spans/s = 1e9 / ns/op.
func BenchmarkWriter(b *testing.B) {
	a, err := New(Config{Service: "bench", Domain: "shop", SpoolDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close(context.Background())
	sp, err := spool.Open(spool.Config{Dir: b.TempDir(), MaxBytes: 8 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	w := &writer{a: a, spans: sp.Writer(spool.StreamSpans), events: sp.Writer(spool.StreamEvents)}
	template := schemas.Span{
		TraceID: schemas.TraceID{1}, SpanID: schemas.SpanID{2}, Operation: "GET /order/{id}", Kind: schemas.KindServer,
		StartUnixNano: 1700000000000000000, DurationNano: 1234567, Status: schemas.StatusOK, StatusCode: 200, SampleRate: 1,
	}
	r := newSpanRecord() // writeSpan resets it for reuse
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tags, keys := r.rec.Tags, r.rec.BusinessKeys
		r.rec = template
		r.rec.Tags = append(tags, schemas.KV{Key: "http.method", Value: "GET"}, schemas.KV{Key: "http.status_code", Value: "200"})
		r.rec.BusinessKeys = append(keys, schemas.KV{Key: "order_id", Value: "1234567890"})
		w.writeSpan(r)
	}
	w.flush()
	b.StopTimer()
	st := sp.Stats()
	b.ReportMetric(float64(st.Bytes)/float64(b.N), "disk-bytes/span")
	b.ReportMetric(1e9/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "spans/s")
	_ = os.RemoveAll(sp.Dir())
}

// BenchmarkHotPathNoWriter is the caller's side alone, on one core: start, 2 tags, 1 business
// key, end and queue, with no writer goroutine competing for the CPU or the span records'
// cache lines. Every 8192 spans the records are reset and handed back on the same goroutine
// with the timer stopped: that is the writer's work, not the caller's. It bounds what BenchmarkStartEnd can
// reach on a quiet machine with a core for each side.
func BenchmarkHotPathNoWriter(b *testing.B) {
	cfg := Config{Service: "bench"}
	cfg.defaults()
	a := &Agent{cfg: cfg, spans: newSpanQueue(1 << 16), stop: make(chan struct{}), started: time.Now()}
	a.clock.Store(newClockBase())
	a.runtime.Store(&runtimeConfig{sampleRate: 1, version: "local"})
	ctx := context.Background()
	var batch []*spanRecord
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_, s := a.StartSpan(ctx, "GET /order/{id}")
		s.SetTag("http.method", "GET")
		s.SetTag("http.status_code", "200")
		s.SetBusinessKey("order_id", "1234567890")
		s.End()
		if i%8192 == 8191 {
			b.StopTimer()
			batch = a.spans.take(batch)
			for _, r := range batch {
				r.reset()
			}
			a.spans.release(batch...)
			b.StartTimer()
		}
	}
}
