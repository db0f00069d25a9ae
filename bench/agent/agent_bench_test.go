// Package agentbench compares the Mercury agent's hot path with the OpenTelemetry Go SDK, its
// Avro records with JSON, and measures the HTTP middleware's overhead. It lives in the bench
// module so the main module does not depend on the OpenTelemetry SDK. Run (see
// docs/BENCHMARKS.md, section Agent):
//
//	cd bench && go test -run '^$' -bench . -benchmem -count 5 ./agent/
package agentbench

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/agenthttp"
	"github.com/mercury-apm/mercury/schemas"
)

// The span both tracers record: the shape of a typical server span.
const (
	spanName = "GET /order/{id}"
	orderID  = "1234567890"
)

// tracerUnderTest starts and ends one span with 2 tags and 1 business key; finish reports how
// many of the n spans started were lost (dropped instead of exported or written).
type tracerUnderTest struct {
	span   func(ctx context.Context)
	finish func(b *testing.B, n int) (lost int64)
}

func mercury(b *testing.B) tracerUnderTest {
	// Default config: the 8192-span queue a host gets without tuning.
	a, err := agent.New(agent.Config{Service: "bench", Domain: "shop", SpoolDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	return tracerUnderTest{
		span: func(ctx context.Context) {
			_, s := a.StartSpan(ctx, spanName)
			s.SetTag("http.method", "GET")
			s.SetTag("http.status_code", "200")
			s.SetBusinessKey("order_id", orderID)
			s.End()
		},
		finish: func(b *testing.B, n int) int64 {
			if err := a.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			st := a.Stats()
			return st.Dropped[agent.DropQueueFull] + st.Dropped[agent.DropDisk]
		},
	}
}

// discardExporter counts what the batch processor hands it, so spans the processor dropped
// (its queue full) show up as lost.
type discardExporter struct{ exported atomic.Int64 }

func (e *discardExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.exported.Add(int64(len(spans)))
	return nil
}

func (e *discardExporter) Shutdown(context.Context) error { return nil }

func otel(b *testing.B) tracerUnderTest {
	exp := &discardExporter{}
	// Default BatchSpanProcessor settings (queue 2048, batches of 512), always sampling: the
	// same work as Mercury at sample rate 1.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	tr := tp.Tracer("bench")
	return tracerUnderTest{
		span: func(ctx context.Context) {
			_, s := tr.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindInternal))
			s.SetAttributes(attribute.String("http.method", "GET"))
			s.SetAttributes(attribute.String("http.status_code", "200"))
			s.SetAttributes(attribute.String("order_id", orderID))
			s.End()
		},
		finish: func(b *testing.B, n int) int64 {
			if err := tp.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			return int64(n) - exp.exported.Load()
		},
	}
}

var tracers = []struct {
	name string
	new  func(*testing.B) tracerUnderTest
}{{"mercury", mercury}, {"otel", otel}}

// cpuMeter reports CPU time per op next to wall time: caller-cpu-ns/op is the benchmark
// goroutine's own thread (the hot path, GC assists included), cpu-ns/op the whole process
// (background writer or batch processor and GC included, until finish returns).
type cpuMeter struct {
	thread bool
	t0, p0 time.Duration
}

func startCPU(thread bool) *cpuMeter {
	if thread {
		runtime.LockOSThread() // the thread's CPU time is then the caller's
	}
	return &cpuMeter{thread: thread, t0: cpuTime(true), p0: cpuTime(false)}
}

func (m *cpuMeter) callerDone(b *testing.B) {
	if m.thread {
		b.ReportMetric(float64(cpuTime(true)-m.t0)/float64(b.N), "caller-cpu-ns/op")
		runtime.UnlockOSThread()
	}
}

func (m *cpuMeter) processDone(b *testing.B) {
	b.ReportMetric(float64(cpuTime(false)-m.p0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkSpan is the hot path: start, 2 tags, 1 business key, end. lost/op is the fraction
// of spans dropped because the background writer (or OTel's batch processor) fell behind a
// caller doing nothing but start spans.
func BenchmarkSpan(b *testing.B) {
	for _, tc := range tracers {
		b.Run(tc.name, func(b *testing.B) {
			t := tc.new(b)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(true)
			for i := 0; i < b.N; i++ {
				t.span(ctx)
			}
			cpu.callerDone(b)
			b.StopTimer()
			lost := t.finish(b, b.N)
			cpu.processDone(b)
			b.ReportMetric(float64(lost)/float64(b.N), "lost/op")
		})
	}
}

// BenchmarkSpanParallel is the same from GOMAXPROCS goroutines.
func BenchmarkSpanParallel(b *testing.B) {
	for _, tc := range tracers {
		b.Run(tc.name, func(b *testing.B) {
			t := tc.new(b)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(false)
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					t.span(ctx)
				}
			})
			b.StopTimer()
			lost := t.finish(b, b.N)
			cpu.processDone(b)
			b.ReportMetric(float64(lost)/float64(b.N), "lost/op")
		})
	}
}

// jsonSpan is the span as a JSON pipeline would ship it: ids in hex, enums as names, maps as
// objects.
type jsonSpan struct {
	TraceID       string            `json:"trace_id"`
	SpanID        string            `json:"span_id"`
	ParentSpanID  string            `json:"parent_span_id"`
	Domain        string            `json:"domain"`
	Service       string            `json:"service"`
	Operation     string            `json:"operation"`
	Kind          string            `json:"kind"`
	Peer          string            `json:"peer"`
	Host          string            `json:"host"`
	StartUnixNano int64             `json:"start_unix_nano"`
	DurationNano  int64             `json:"duration_nano"`
	Status        string            `json:"status"`
	StatusCode    int32             `json:"status_code"`
	ErrorType     string            `json:"error_type"`
	SampleRate    float64           `json:"sample_rate"`
	Dyed          bool              `json:"dyed"`
	BusinessKeys  map[string]string `json:"business_keys"`
	Tags          map[string]string `json:"tags"`
	Events        []struct{}        `json:"events"`
	AgentVersion  string            `json:"agent_version"`
}

func benchSpan() (schemas.Span, jsonSpan) {
	s := schemas.Span{
		TraceID: schemas.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  schemas.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		Domain:  "shop", Service: "order", Operation: spanName, Kind: schemas.KindServer, Host: "order-7f9c4-x2x9z",
		StartUnixNano: 1700000000123456789, DurationNano: 1234567, Status: schemas.StatusOK, StatusCode: 200,
		SampleRate: 1, AgentVersion: agent.Version,
		Tags:         []schemas.KV{{Key: "http.method", Value: "GET"}, {Key: "http.status_code", Value: "200"}},
		BusinessKeys: []schemas.KV{{Key: "order_id", Value: orderID}},
	}
	j := jsonSpan{
		TraceID: hex.EncodeToString(s.TraceID[:]), SpanID: hex.EncodeToString(s.SpanID[:]),
		ParentSpanID: hex.EncodeToString(s.ParentSpanID[:]), Domain: s.Domain, Service: s.Service,
		Operation: s.Operation, Kind: s.Kind.String(), Host: s.Host, StartUnixNano: s.StartUnixNano,
		DurationNano: s.DurationNano, Status: s.Status.String(), StatusCode: s.StatusCode, SampleRate: s.SampleRate,
		AgentVersion: s.AgentVersion, Events: []struct{}{},
		Tags:         map[string]string{"http.method": "GET", "http.status_code": "200"},
		BusinessKeys: map[string]string{"order_id": orderID},
	}
	return s, j
}

// BenchmarkEncode encodes the same span as Avro (the agent's encoder, byte-identical to
// goavro) and as JSON; bytes/span and avro/json compare the sizes.
func BenchmarkEncode(b *testing.B) {
	s, j := benchSpan()
	avroLen := len(schemas.AppendSpan(nil, &s))
	js, err := json.Marshal(j)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("avro", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf = schemas.AppendSpan(buf[:0], &s)
		}
		b.ReportMetric(float64(avroLen), "bytes/span")
		b.ReportMetric(float64(avroLen)/float64(len(js)), "avro/json")
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := json.Marshal(j); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(js)), "bytes/span")
	})
}

// orderMux is the application: one routed handler with a small JSON body.
func orderMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /order/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"`+r.PathValue("id")+`","status":"paid"}`)
	})
	return mux
}

// handlers returns the bare application and the same behind the middleware, whose agent
// writes to a temp spool; closing it is the benchmark's cleanup.
func handlers(b *testing.B) []struct {
	name string
	h    http.Handler
} {
	a, err := agent.New(agent.Config{Service: "order", Domain: "shop", SpoolDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close(context.Background()) })
	return []struct {
		name string
		h    http.Handler
	}{
		{"plain", orderMux()},
		{"middleware", agenthttp.Middleware(a, orderMux(),
			agenthttp.WithBusinessKeys(map[string]string{"order_id": "query:order_id"}))},
	}
}

// BenchmarkHTTPInProcess calls ServeHTTP directly with a recorder: the middleware's own cost,
// without the network.
func BenchmarkHTTPInProcess(b *testing.B) {
	for _, tc := range handlers(b) {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/order/12345?order_id=12345", nil)
			b.ReportAllocs()
			cpu := startCPU(true)
			for i := 0; i < b.N; i++ {
				rec := httptest.NewRecorder()
				tc.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
			cpu.callerDone(b)
		})
	}
}

// BenchmarkHTTPLoopback is a keep-alive client and server on 127.0.0.1.
func BenchmarkHTTPLoopback(b *testing.B) {
	for _, tc := range handlers(b) {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := srv.URL + "/order/12345?order_id=12345"
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU(false)
			defer cpu.processDone(b)
			for i := 0; i < b.N; i++ {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
