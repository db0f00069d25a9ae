package interop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/mercury-apm/mercury/allinone"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/query/jaeger"
	"github.com/mercury-apm/mercury/query/traces"
)

// TestOTLPExporters: the OpenTelemetry Go SDK's OTLP/HTTP and OTLP/gRPC exporters send a
// trace each to `mercury up` (OTLP ingest → embedded broker → collector → Pebble); each is
// found by its business key through Mercury's API and through the Jaeger API.
func TestOTLPExporters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := allinone.New(ctx, allinone.Config{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		OTLPHTTPAddr: "127.0.0.1:0", OTLPGRPCAddr: "127.0.0.1:0", Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mercury up: %v", err)
		}
	})
	exporters := map[string]func(context.Context) (sdktrace.SpanExporter, error){
		"http": func(ctx context.Context) (sdktrace.SpanExporter, error) {
			return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(p.OTLPHTTPURL()+"/v1/traces"), otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		},
		"grpc": func(ctx context.Context) (sdktrace.SpanExporter, error) {
			return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(p.OTLPGRPCAddr()), otlptracegrpc.WithInsecure())
		},
	}
	for name, newExporter := range exporters {
		t.Run(name, func(t *testing.T) {
			exp, err := newExporter(ctx)
			if err != nil {
				t.Fatal(err)
			}
			service := "otel-shop-" + name
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(resource.NewSchemaless(
				attribute.String("service.name", service), attribute.String("service.namespace", "shop"), attribute.String("host.name", "h-"+name))))
			orderID := name + "-" + randomHex(6)
			tracer := tp.Tracer("interop")
			rctx, root := tracer.Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("order_id", orderID)))
			_, charge := tracer.Start(rctx, "charge", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attribute.String("peer.service", "payment")))
			charge.RecordError(errors.New("card declined"))
			charge.SetStatus(codes.Error, "declined")
			charge.End()
			root.End()
			if err := tp.Shutdown(ctx); err != nil { // flushes through the exporter
				t.Fatalf("export: %v", err)
			}
			traceID := root.SpanContext().TraceID().String()

			// Mercury's API, by business key.
			var found traces.SearchResult
			eventually(t, "the trace in Mercury's search", func() bool {
				getJSON(t, p.QueryURL()+"/api/v1/traces?"+url.Values{"bk": {"order_id:" + orderID}}.Encode(), &found)
				return len(found.Traces) == 1 && found.Traces[0].SpanCount == 2
			})
			if s := found.Traces[0]; s.TraceID != traceID || s.RootService != service || s.RootOperation != "POST /orders" || s.ErrorCount != 1 {
				t.Fatalf("Mercury search: %+v", s)
			}

			// Jaeger's API, the same trace by tag.
			var res struct {
				Data []jaeger.Trace `json:"data"`
			}
			getJSON(t, p.QueryURL()+"/api/traces?"+url.Values{"service": {service}, "tags": {`{"order_id":"` + orderID + `"}`}, "lookback": {"1h"}}.Encode(), &res)
			if len(res.Data) != 1 || res.Data[0].TraceID != traceID || len(res.Data[0].Spans) != 2 {
				t.Fatalf("Jaeger search: %+v", res.Data)
			}
			tr := res.Data[0]
			rs, cs := tr.Spans[0], tr.Spans[1]
			if rs.OperationName != "POST /orders" || tr.Processes[rs.ProcessID].ServiceName != service ||
				len(cs.References) != 1 || cs.References[0].SpanID != rs.SpanID || cs.References[0].RefType != "CHILD_OF" ||
				cs.Duration <= 0 || len(cs.Logs) != 1 || !hasTag(cs.Tags, "error", true) || !hasTag(cs.Tags, "peer.service", "payment") ||
				!hasTag(rs.Tags, "order_id", orderID) {
				t.Fatalf("Jaeger trace: %+v", tr)
			}
			var services struct {
				Data []string `json:"data"`
			}
			getJSON(t, p.QueryURL()+"/api/services", &services)
			if !slices.Contains(services.Data, service) {
				t.Fatalf("Jaeger services %q lack %s", services.Data, service)
			}
			var byID struct {
				Data []jaeger.Trace `json:"data"`
			}
			getJSON(t, p.QueryURL()+"/api/traces/"+traceID, &byID)
			if len(byID.Data) != 1 || len(byID.Data[0].Spans) != 2 {
				t.Fatalf("Jaeger trace by id: %+v", byID.Data)
			}
		})
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func getJSON(t *testing.T, u string, out any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// eventually polls cond: the pipeline is asynchronous (topic, consumer, store), with no
// clock of ours to advance.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasTag(kvs []jaeger.KeyValue, key string, value any) bool {
	for _, kv := range kvs {
		if kv.Key == key {
			return fmt.Sprint(kv.Value) == fmt.Sprint(value)
		}
	}
	return false
}
