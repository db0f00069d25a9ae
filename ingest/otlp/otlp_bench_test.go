package otlp_test

import (
	"context"
	"encoding/binary"
	"log/slog"
	"testing"

	"github.com/segmentio/kafka-go"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/ingest/otlp"
)

type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }

// batchRequest is what an SDK's batch processor sends: n spans of one resource, each shaped
// like request()'s (attributes of every type, business keys, a tracestate member on the
// server spans), one in 16 with an exception.
func batchRequest(n int) []byte {
	req := request()
	ss := req.ResourceSpans[0].ScopeSpans[0]
	tmpl := ss.Spans
	ss.Spans = nil
	for i := 0; i < n; i++ {
		sp := proto.Clone(tmpl[i%2]).(*tracepb.Span)
		binary.BigEndian.PutUint64(sp.TraceId[8:], uint64(i/2+1))
		if i%16 != 0 && len(sp.Events) > 1 {
			sp.Events, sp.Status = sp.Events[:1], nil
		}
		ss.Spans = append(ss.Spans, sp)
	}
	b, _ := proto.Marshal(req)
	return b
}

func benchHTTP(b *testing.B, in *otlp.Ingest, spans int) {
	body := batchRequest(spans)
	h := in.HTTPHandler()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rec := post(b, h, otlp.ContentTypeProtobuf, "", body); rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(spans*b.N)/b.Elapsed().Seconds(), "spans/s")
}

// BenchmarkHTTPExport is the OTLP/HTTP path without the bus: read, decode, map, encode.
func BenchmarkHTTPExport(b *testing.B) {
	benchHTTP(b, newIngest(b, otlp.Config{Writer: discard{}}), 512)
}

// BenchmarkHTTPExportBroker adds the synchronous produce (acks=all) to the embedded broker.
func BenchmarkHTTPExportBroker(b *testing.B) {
	ctx := context.Background()
	br, err := broker.New(ctx, broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	in := newIngest(b, otlp.Config{Bus: bus.Config{Brokers: []string{br.Addr()}}})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(rctx) }()
	defer func() { cancel(); <-done }()
	benchHTTP(b, in, 512)
}
