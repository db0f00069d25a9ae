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

// BenchmarkWriter is the background half on one goroutine: decode what End queued, mask,
// encode and append each span to real spool files (flushed in 64 KiB blocks, rotated at
// 16 MiB), taking 64 spans at a time like the writer does. spans/s = 1e9 / ns/op.
// benchSpan is the span every agent benchmark records, as End queues it.
func benchSpan() schemas.Span {
	return schemas.Span{
		TraceID: schemas.TraceID{1}, SpanID: schemas.SpanID{2}, Operation: "GET /order/{id}", Kind: schemas.KindServer,
		StartUnixNano: 1700000000000000000, DurationNano: 1234567, Status: schemas.StatusOK, StatusCode: 200, SampleRate: 1,
		Tags:         []schemas.KV{{Key: "http.method", Value: "GET"}, {Key: "http.status_code", Value: "200"}},
		BusinessKeys: []schemas.KV{{Key: "order_id", Value: "1234567890"}},
	}
}

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
	span := benchSpan()
	const batchSpans = 64
	var batch []byte
	for range batchSpans {
		batch = appendQueued(batch, &span)
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batchSpans {
		n := min(batchSpans, b.N-i)
		w.writeSpans(batch, n)
	}
	w.flush()
	b.StopTimer()
	st := sp.Stats()
	b.ReportMetric(float64(st.Bytes)/float64(b.N), "disk-bytes/span")
	b.ReportMetric(1e9/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "spans/s")
	_ = os.RemoveAll(sp.Dir())
}

// BenchmarkHotPathNoWriter is the caller's side alone, on one core: start, 2 tags, 1 business
// key, end and queue, with no writer goroutine competing for the CPU or the queue's cache
// lines. Every 8192 spans the queue is emptied; that swap is the writer's work, a few
// nanoseconds per batch. It bounds what BenchmarkStartEnd can reach on a quiet machine with a
// core for each side.
func BenchmarkHotPathNoWriter(b *testing.B) {
	cfg := Config{Service: "bench", QueueSize: 1 << 16}
	cfg.defaults()
	a := newAgent(cfg, nil, nil)
	time.Sleep(5 * time.Millisecond) // measure the counter's rate, as the writer would have
	a.clock.Store(newClockBase(a.clock.Load()))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer() // the setup above is not the hot path
	for i := 0; i < b.N; i++ {
		_, s := a.StartSpan(ctx, "GET /order/{id}")
		s.SetTag("http.method", "GET")
		s.SetTag("http.status_code", "200")
		s.SetBusinessKey("order_id", "1234567890")
		s.End()
		if i%8192 == 8191 {
			a.spans.take() // a swap: stopping the timer would cost more
		}
	}
}

// BenchmarkQueueEncode is End's encoding of the queue format, next to Avro's for the same span.
func BenchmarkQueueEncode(b *testing.B) {
	s := benchSpan()
	buf := make([]byte, 0, 512)
	for _, c := range []struct {
		name string
		enc  func([]byte, *schemas.Span) []byte
	}{{"queue", appendQueued}, {"avro", schemas.AppendSpan}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = c.enc(buf[:0], &s)
			}
			b.ReportMetric(float64(len(buf)), "bytes/span")
		})
	}
}

// BenchmarkQueueDecode is the writer's decoding of the queue format.
func BenchmarkQueueDecode(b *testing.B) {
	s := benchSpan()
	body := appendQueued(nil, &s)
	var out schemas.Span
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeQueued(body, &out); err != nil {
			b.Fatal(err)
		}
	}
}
