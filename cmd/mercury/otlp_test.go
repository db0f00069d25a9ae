package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/internal/testproc"
	"github.com/mercury-apm/mercury/query/jaeger"
	"github.com/mercury-apm/mercury/query/traces"
	"github.com/mercury-apm/mercury/storage/esstore/esfake"
	"github.com/mercury-apm/mercury/storage/hbaserest/hbasefake"
)

// TestOTLPWiring: `mercury otlp`, `mercury collector` and `mercury query` as separate
// processes (broker embedded, index in Elasticsearch, rows in HBase, both in-test servers):
// an OTLP/JSON export with a renamed business key is found through Mercury's API and through
// the Jaeger API, whose service list comes from Elasticsearch's terms aggregation.
func TestOTLPWiring(t *testing.T) {
	es, hb := esfake.New(), hbasefake.New()
	defer es.Close()
	defer hb.Close()
	b, err := broker.New(context.Background(), broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	otlpAddr, colAddr, qAddr := testproc.FreeAddr(t), testproc.FreeAddr(t), testproc.FreeAddr(t)
	stores := []string{"--brokers", b.Addr(), "--es", es.URL, "--hbase", hb.URL}
	daemonProcess(t, "otlp", "--brokers", b.Addr(), "--http", otlpAddr, "--grpc", "off", "--business-keys", "app.order_id=order_id", "--domain-attribute", "team")
	daemonProcess(t, append([]string{"collector", "--http", colAddr, "--batch-wait", "20ms"}, stores...)...)
	daemonProcess(t, append([]string{"query", "--http", qAddr, "--data", t.TempDir()}, stores...)...)
	for _, addr := range []string{otlpAddr, colAddr, qAddr} {
		testproc.Eventually(t, addr+" ready", 30*time.Second, func() (bool, string) {
			code, body := get(t, "http://"+addr+"/readyz", nil)
			return code == 200, body
		})
	}
	start := time.Now().UnixNano()
	body := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"otel-cart"}},
	  {"key":"team","value":{"stringValue":"shop"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
	  "spanId":"eee19b7ec3c1b174","name":"POST /cart","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"` + strconv.FormatInt(start, 10) + `",
	  "endTimeUnixNano":"` + strconv.FormatInt(start+int64(time.Millisecond), 10) + `",
	  "attributes":[{"key":"app.order_id","value":{"stringValue":"otlp-77"}}]}]}]}]}`
	resp, err := http.Post("http://"+otlpAddr+"/v1/traces", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("export: %s", resp.Status)
	}
	testproc.Eventually(t, "the OTLP trace through the query process", 30*time.Second, func() (bool, string) {
		var res traces.SearchResult
		code, body := get(t, "http://"+qAddr+"/api/v1/traces?bk=order_id:otlp-77", &res)
		return code == 200 && len(res.Traces) == 1 && res.Traces[0].RootService == "otel-cart", body
	})
	var jr struct {
		Data []jaeger.Trace `json:"data"`
	}
	if code, body := get(t, "http://"+qAddr+"/api/traces?"+url.Values{"service": {"otel-cart"}, "tags": {`{"order_id":"otlp-77"}`}}.Encode(), &jr); code != 200 ||
		len(jr.Data) != 1 || jr.Data[0].TraceID != "5b8efff798038103d269b633813fc60c" {
		t.Fatalf("Jaeger search: %d %s", code, body)
	}
	if p := jr.Data[0].Processes[jr.Data[0].Spans[0].ProcessID]; len(p.Tags) == 0 || p.Tags[0].Value != "shop" {
		t.Fatalf("process (domain from --domain-attribute): %+v", p)
	}
	var services struct {
		Data []string `json:"data"`
	}
	if code, body := get(t, "http://"+qAddr+"/api/services", &services); code != 200 || !slices.Contains(services.Data, "otel-cart") {
		t.Fatalf("Jaeger services: %d %s", code, body)
	}
	if _, metrics := get(t, "http://"+otlpAddr+"/metrics", nil); !strings.Contains(metrics, "mercury_otlp_spans_total 1") {
		t.Fatalf("otlp metrics lack the span:\n%s", metrics)
	}
}
