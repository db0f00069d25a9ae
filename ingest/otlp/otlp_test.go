package otlp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	coltrace "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/slim/otlp/common/v1"
	res "go.opentelemetry.io/proto/slim/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/ingest/otlp"
	"github.com/mercury-apm/mercury/internal/clock"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/schemas"
)

// recorder is a Writer that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (r *recorder) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		m.Key, m.Value = slices.Clone(m.Key), slices.Clone(m.Value) // the caller reuses its buffers
		r.msgs = append(r.msgs, m)
	}
	return nil
}

func (r *recorder) spans(t *testing.T) []schemas.Span {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []schemas.Span
	for _, m := range r.msgs {
		if m.Topic != bus.TopicSpans {
			continue
		}
		var s schemas.Span
		if err := schemas.Unmarshal(m.Value, &s); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != s.TraceID.String() {
			t.Errorf("span key %q, trace %s", m.Key, s.TraceID)
		}
		out = append(out, s)
	}
	return out
}

func (r *recorder) events(t *testing.T) []schemas.Event {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []schemas.Event
	for _, m := range r.msgs {
		if m.Topic != bus.TopicEvents {
			continue
		}
		var e schemas.Event
		if err := schemas.Unmarshal(m.Value, &e); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != e.Service {
			t.Errorf("event key %q, service %s", m.Key, e.Service)
		}
		out = append(out, e)
	}
	return out
}

func newIngest(t testing.TB, cfg otlp.Config) *otlp.Ingest {
	t.Helper()
	if cfg.Writer == nil && cfg.Bus.Brokers == nil {
		cfg.Writer = &recorder{}
	}
	in, err := otlp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func strAttr(k, v string) *common.KeyValue {
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: v}}}
}

func intAttr(k string, v int64) *common.KeyValue {
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_IntValue{IntValue: v}}}
}

var (
	traceID = []byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	start   = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
)

// request is one checkout trace: a failed server span with an exception, a client span to
// payment, and attributes of every type.
func request() *coltrace.ExportTraceServiceRequest {
	ns := func(d time.Duration) uint64 { return uint64(start.Add(d).UnixNano()) }
	server := &tracepb.Span{
		TraceId: traceID, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Name: "POST /checkout", Kind: tracepb.Span_SPAN_KIND_SERVER,
		TraceState:        "mercury=r:0.25;d:1,vendor=x",
		StartTimeUnixNano: ns(0), EndTimeUnixNano: ns(120 * time.Millisecond),
		Attributes: []*common.KeyValue{
			strAttr("order_id", "o-42"), strAttr("app.user_id", "u-7"), intAttr("http.response.status_code", 500),
			{Key: "retry", Value: &common.AnyValue{Value: &common.AnyValue_BoolValue{BoolValue: true}}},
			{Key: "ratio", Value: &common.AnyValue{Value: &common.AnyValue_DoubleValue{DoubleValue: 0.5}}},
			{Key: "raw", Value: &common.AnyValue{Value: &common.AnyValue_BytesValue{BytesValue: []byte{1, 2}}}},
			{Key: "list", Value: &common.AnyValue{Value: &common.AnyValue_ArrayValue{ArrayValue: &common.ArrayValue{Values: []*common.AnyValue{
				{Value: &common.AnyValue_StringValue{StringValue: "a"}}, {Value: &common.AnyValue_IntValue{IntValue: 1}}}}}}},
		},
		Events: []*tracepb.Span_Event{
			{TimeUnixNano: ns(10 * time.Millisecond), Name: "cache miss"},
			{TimeUnixNano: ns(100 * time.Millisecond), Name: "exception", Attributes: []*common.KeyValue{
				strAttr("exception.type", "CardDeclined"), strAttr("exception.message", "card 4242 declined"),
				strAttr("exception.stacktrace", "at pay()\nat checkout()"), strAttr("attempt", "2")}},
		},
		Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "payment failed"},
	}
	client := &tracepb.Span{
		TraceId: traceID, SpanId: []byte{2, 2, 3, 4, 5, 6, 7, 8}, ParentSpanId: server.SpanId, Name: "POST /pay",
		Kind: tracepb.Span_SPAN_KIND_CLIENT, StartTimeUnixNano: ns(5 * time.Millisecond), EndTimeUnixNano: ns(100 * time.Millisecond),
		Attributes: []*common.KeyValue{strAttr("server.address", "pay.internal"), intAttr("server.port", 8443), strAttr("peer.service", "payment")},
		Status:     &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK},
	}
	return &coltrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &res.Resource{Attributes: []*common.KeyValue{
			strAttr("service.name", "checkout"), strAttr("service.namespace", "shop"), strAttr("host.name", "h1"),
			strAttr("telemetry.sdk.language", "go"), strAttr("telemetry.sdk.version", "1.47.0"), strAttr("deployment.environment", "prod"),
		}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &common.InstrumentationScope{Name: "shop/checkout", Version: "0.1"}, Spans: []*tracepb.Span{server, client}}},
	}}}
}

func post(t testing.TB, h http.Handler, contentType, encoding string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func mustProto(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tag(kvs []schemas.KV, k string) string { v, _ := schemas.Get(kvs, k); return v }

func TestMapping(t *testing.T) {
	w := &recorder{}
	in := newIngest(t, otlp.Config{Writer: w, BusinessKeys: []string{"order_id", "app.user_id=user_id"}})
	rec := post(t, in.HTTPHandler(), otlp.ContentTypeProtobuf, "", mustProto(t, request()))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != otlp.ContentTypeProtobuf {
		t.Fatalf("status %d %q: %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var resp coltrace.ExportTraceServiceResponse
	if err := proto.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.PartialSuccess != nil {
		t.Fatalf("response %v: %v", &resp, err)
	}
	spans := w.spans(t)
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	s, c := spans[0], spans[1]
	if s.TraceID.String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.SpanID.String() != "0102030405060708" || !s.ParentSpanID.IsZero() {
		t.Errorf("ids: %s %s %s", s.TraceID, s.SpanID, s.ParentSpanID)
	}
	if s.Service != "checkout" || s.Domain != "shop" || s.Host != "h1" || s.Operation != "POST /checkout" || s.Kind != schemas.KindServer ||
		s.AgentVersion != "otel-go/1.47.0" || s.StartUnixNano != start.UnixNano() || s.DurationNano != int64(120*time.Millisecond) {
		t.Errorf("server span: %+v", s)
	}
	if s.Status != schemas.StatusError || s.ErrorType != "CardDeclined" || s.StatusCode != 500 || tag(s.Tags, "otel.status_description") != "payment failed" {
		t.Errorf("status: %v %q %d %v", s.Status, s.ErrorType, s.StatusCode, s.Tags)
	}
	if s.SampleRate != 0.25 || !s.Dyed {
		t.Errorf("tracestate: rate %v dyed %v", s.SampleRate, s.Dyed)
	}
	if !slices.Equal(s.BusinessKeys, []schemas.KV{{Key: "order_id", Value: "o-42"}, {Key: "user_id", Value: "u-7"}}) {
		t.Errorf("business keys: %v", s.BusinessKeys)
	}
	for k, want := range map[string]string{"retry": "true", "ratio": "0.5", "raw": "AQI=", "list": `["a",1]`, "http.response.status_code": "500",
		"deployment.environment": "prod", "otel.scope.name": "shop/checkout", "otel.scope.version": "0.1", "order_id": "", "service.name": ""} {
		if got := tag(s.Tags, k); got != want {
			t.Errorf("tag %s = %q, want %q", k, got, want)
		}
	}
	if len(s.Events) != 2 || s.Events[1].Name != "exception" || tag(s.Events[1].Attributes, "exception.stacktrace") != "at pay()\nat checkout()" ||
		s.Events[0].TimeUnixNano != start.Add(10*time.Millisecond).UnixNano() {
		t.Errorf("events: %+v", s.Events)
	}
	if c.Kind != schemas.KindClient || c.Peer != "payment" || c.ParentSpanID != s.SpanID || c.Status != schemas.StatusOK || c.SampleRate != 1 || c.Dyed {
		t.Errorf("client span: %+v", c)
	}
	evs := w.events(t)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	e := evs[0]
	if e.Type != schemas.EventException || e.Name != "CardDeclined" || e.Message != "card 4242 declined" || e.Stack != "at pay()\nat checkout()" ||
		e.Service != "checkout" || e.Domain != "shop" || e.Operation != "POST /checkout" || e.TraceID != s.TraceID || e.SpanID != s.SpanID ||
		!e.Dyed || !slices.Equal(e.Attributes, []schemas.KV{{Key: "attempt", Value: "2"}}) {
		t.Errorf("event: %+v", e)
	}
}

func TestPeerFromAddress(t *testing.T) {
	w := &recorder{}
	in := newIngest(t, otlp.Config{Writer: w, DomainAttribute: "team"})
	req := request()
	rs := req.ResourceSpans[0]
	rs.Resource.Attributes = []*common.KeyValue{strAttr("service.name", "checkout")} // no namespace, no team
	rs.ScopeSpans[0].Spans[1].Attributes = rs.ScopeSpans[0].Spans[1].Attributes[:2]  // no peer.service
	if rec := post(t, in.HTTPHandler(), otlp.ContentTypeProtobuf, "", mustProto(t, req)); rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	spans := w.spans(t)
	if spans[1].Peer != "pay.internal:8443" || spans[0].Domain != "checkout" || spans[0].AgentVersion != "otlp" {
		t.Fatalf("peer %q, domain %q, agent %q", spans[1].Peer, spans[0].Domain, spans[0].AgentVersion)
	}
	// Default business keys: order_id only here; app.user_id stays a tag.
	if !slices.Equal(spans[0].BusinessKeys, []schemas.KV{{Key: "order_id", Value: "o-42"}}) || tag(spans[0].Tags, "app.user_id") != "u-7" {
		t.Fatalf("business keys %v", spans[0].BusinessKeys)
	}
}

// The OTLP/JSON encoding: hex ids, enums as numbers, 64-bit integers as strings, unknown
// fields ignored, gzip accepted.
const jsonBody = `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
 "scopeSpans":[{"scope":{"name":"cart"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
 "parentSpanId":"eee19b7ec3c1b173","name":"add","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
 "attributes":[{"key":"order_id","value":{"intValue":"77"}}],"status":{"code":2},"futureField":true,
 "links":[{"traceId":"5b8efff798038103d269b633813fc60d","spanId":"eee19b7ec3c1b175"}]}]}]}]}`

func TestJSON(t *testing.T) {
	w := &recorder{}
	in := newIngest(t, otlp.Config{Writer: w})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, jsonBody)
	zw.Close()
	rec := post(t, in.HTTPHandler(), "application/json; charset=utf-8", "gzip", gz.Bytes())
	if rec.Code != 200 || rec.Header().Get("Content-Type") != otlp.ContentTypeJSON || strings.TrimSpace(rec.Body.String()) != "{}" {
		t.Fatalf("status %d %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	spans := w.spans(t)
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.TraceID.String() != "5b8efff798038103d269b633813fc60c" || s.SpanID.String() != "eee19b7ec3c1b174" || s.ParentSpanID.String() != "eee19b7ec3c1b173" ||
		s.Service != "cart" || s.Kind != schemas.KindServer || s.StartUnixNano != 1544712660000000000 || s.DurationNano != int64(time.Second) ||
		s.Status != schemas.StatusError || tag(s.BusinessKeys, "order_id") != "77" {
		t.Fatalf("span: %+v", s)
	}
}

func TestPartialSuccess(t *testing.T) {
	w := &recorder{}
	in := newIngest(t, otlp.Config{Writer: w})
	req := request()
	spans := req.ResourceSpans[0].ScopeSpans[0].Spans
	short := proto.Clone(spans[1]).(*tracepb.Span)
	short.TraceId = []byte{1, 2, 3}
	zero := proto.Clone(spans[1]).(*tracepb.Span)
	zero.SpanId = make([]byte, 8)
	req.ResourceSpans[0].ScopeSpans[0].Spans = append(spans, short, zero)
	rec := post(t, in.HTTPHandler(), otlp.ContentTypeProtobuf, "", mustProto(t, req))
	var resp coltrace.ExportTraceServiceResponse
	if err := proto.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	ps := resp.GetPartialSuccess()
	if rec.Code != 200 || ps.GetRejectedSpans() != 2 || !strings.Contains(ps.GetErrorMessage(), "2 spans rejected; the first: ") ||
		!strings.Contains(ps.GetErrorMessage(), "trace id of 3 bytes") {
		t.Fatalf("%d %v", rec.Code, ps)
	}
	if got := len(w.spans(t)); got != 2 {
		t.Fatalf("%d spans stored, want the 2 valid ones", got)
	}

	// In JSON, the partial success is JSON too.
	rec = post(t, in.HTTPHandler(), otlp.ContentTypeJSON, "", []byte(strings.Replace(jsonBody, "eee19b7ec3c1b174", "0000000000000000", 1)))
	resp.Reset()
	if err := protojson.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if ps := resp.GetPartialSuccess(); rec.Code != 200 || ps.GetRejectedSpans() != 1 || !strings.Contains(ps.GetErrorMessage(), "all-zero") {
		t.Fatalf("JSON: %d %v", rec.Code, ps)
	}
	if got := len(w.spans(t)); got != 2 {
		t.Fatalf("%d spans stored after a rejected one", got)
	}
}

// checkStatus decodes a google.rpc.Status error body.
func checkStatus(t *testing.T, what string, rec *httptest.ResponseRecorder, code int, msg string) {
	t.Helper()
	var st spb.Status
	var err error
	if rec.Header().Get("Content-Type") == otlp.ContentTypeJSON {
		err = protojson.Unmarshal(rec.Body.Bytes(), &st)
	} else {
		err = proto.Unmarshal(rec.Body.Bytes(), &st)
	}
	if rec.Code != code || err != nil || !strings.Contains(st.GetMessage(), msg) {
		t.Errorf("%s: %d %q (%v), want %d with %q", what, rec.Code, st.GetMessage(), err, code, msg)
	}
}

func TestBadInput(t *testing.T) {
	w := &recorder{}
	in := newIngest(t, otlp.Config{Writer: w, MaxBodyBytes: 4 << 10})
	h := in.HTTPHandler()
	gzipped := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	big := bytes.Repeat([]byte{0}, 5<<10)
	for _, c := range []struct {
		what, ct, enc string
		body          []byte
		code          int
		msg           string
	}{
		{"garbage protobuf", otlp.ContentTypeProtobuf, "", []byte("\xff\xff\xff"), 400, "protobuf body"},
		{"garbage JSON", otlp.ContentTypeJSON, "", []byte("{nope"), 400, "JSON body"},
		{"JSON after the object", otlp.ContentTypeJSON, "", []byte("{} {}"), 400, "data after the object"},
		{"id not hex", otlp.ContentTypeJSON, "", []byte(strings.Replace(jsonBody, "5b8efff798038103d269b633813fc60c", "zz", 1)), 400, `traceId "zz" is not hex`},
		{"wrong JSON type", otlp.ContentTypeJSON, "", []byte(`{"resourceSpans":7}`), 400, "JSON body"},
		{"too large", otlp.ContentTypeProtobuf, "", big, 413, "larger than 4096 bytes"},
		{"gzip bomb", otlp.ContentTypeProtobuf, "gzip", gzipped(big), 413, "larger than 4096 bytes decompressed"},
		{"corrupt gzip", otlp.ContentTypeProtobuf, "gzip", []byte("not gzip"), 400, "read body"},
		{"text", "text/plain", "", []byte("hi"), 415, `content type "text/plain"`},
		{"no content type", "", "", mustProto(t, request()), 415, "content type"},
		{"brotli", otlp.ContentTypeJSON, "br", []byte("{}"), 415, `content encoding "br"`},
	} {
		checkStatus(t, c.what, post(t, h, c.ct, c.enc, c.body), c.code, c.msg)
	}
	if len(w.msgs) != 0 {
		t.Fatalf("bad input produced %d records", len(w.msgs))
	}
	// Through the daemon's routes, other methods are refused.
	mux := http.NewServeMux()
	in.Routes(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/traces", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", rec.Code)
	}
	if _, err := otlp.New(otlp.Config{Writer: w, BusinessKeys: []string{"=x"}}); err == nil || !strings.Contains(err.Error(), `business key "=x"`) {
		t.Fatalf("bad business key: %v", err)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestBusDown(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	in := newIngest(t, otlp.Config{Bus: bus.Config{Brokers: []string{closedAddr(t)}, DialTimeout: time.Second}, WriteTimeout: 3 * time.Second, Clock: clk})
	rec := post(t, in.HTTPHandler(), otlp.ContentTypeProtobuf, "", mustProto(t, request()))
	checkStatus(t, "bus down", rec, 503, "retry later")
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if err := in.Ready(); err == nil || !strings.Contains(err.Error(), "bus failing") {
		t.Errorf("Ready = %v", err)
	}
	// An idle daemon takes traffic again after a while: nothing else would clear the failure.
	clk.Advance(otlp.NotReadyFor)
	if err := in.Ready(); err != nil {
		t.Errorf("Ready %s after the failure = %v", otlp.NotReadyFor, err)
	}
	_, err := in.Export(context.Background(), request())
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC: %v, want Unavailable", err)
	}
}

func TestGRPC(t *testing.T) {
	w := &recorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := newIngest(t, otlp.Config{Writer: w, GRPC: ln, MaxBodyBytes: 64 << 10})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	var resp coltrace.ExportTraceServiceResponse
	if err := conn.Invoke(ctx, method, request(), &resp, grpc.UseCompressor("gzip")); err != nil || resp.PartialSuccess != nil {
		t.Fatalf("Export: %v %v", err, &resp)
	}
	if n := len(w.spans(t)); n != 2 {
		t.Fatalf("%d spans", n)
	}
	big := request()
	big.ResourceSpans[0].ScopeSpans[0].Spans[0].Name = strings.Repeat("x", 100<<10)
	if err := conn.Invoke(ctx, method, big, &resp); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the limit: %v, want ResourceExhausted", err)
	}
}

// Run serves OTLP/HTTP on a listener of its own and stops cleanly.
func TestRunHTTPListener(t *testing.T) {
	w := &recorder{}
	ln, err := daemon.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := newIngest(t, otlp.Config{Writer: w, HTTP: ln})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	resp, err := http.Post(ln.URL()+"/v1/traces", otlp.ContentTypeProtobuf, bytes.NewReader(mustProto(t, request())))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil || resp.StatusCode != 200 || len(w.spans(t)) != 2 {
		t.Fatalf("Run %v, status %d, %d spans", err, resp.StatusCode, len(w.spans(t)))
	}
}

// Spans over the limits are rejected one by one; their neighbours are kept.
func TestOversizedSpans(t *testing.T) {
	w := &recorder{}
	in := newIngest(t, otlp.Config{Writer: w})
	req := request()
	spans := req.ResourceSpans[0].ScopeSpans[0].Spans
	huge := proto.Clone(spans[1]).(*tracepb.Span)
	huge.Attributes = append(huge.Attributes, strAttr("blob", strings.Repeat("x", otlp.MaxMessageBytes)))
	crowded := proto.Clone(spans[1]).(*tracepb.Span)
	for i := 0; i <= otlp.MaxAttributes; i++ {
		crowded.Attributes = append(crowded.Attributes, intAttr("a"+strconv.Itoa(i), int64(i)))
	}
	req.ResourceSpans[0].ScopeSpans[0].Spans = []*tracepb.Span{huge, spans[0], crowded}
	rec := post(t, in.HTTPHandler(), otlp.ContentTypeProtobuf, "", mustProto(t, req))
	var resp coltrace.ExportTraceServiceResponse
	if err := proto.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if ps := resp.GetPartialSuccess(); rec.Code != 200 || ps.GetRejectedSpans() != 2 || !strings.Contains(ps.GetErrorMessage(), "bytes encoded, at most") {
		t.Fatalf("%d %v", rec.Code, ps)
	}
	if got := w.spans(t); len(got) != 1 || got[0].Operation != "POST /checkout" {
		t.Fatalf("kept %d spans", len(got))
	}
	req.ResourceSpans[0].ScopeSpans[0].Spans = []*tracepb.Span{crowded}
	resp.Reset()
	rec = post(t, in.HTTPHandler(), otlp.ContentTypeProtobuf, "", mustProto(t, req))
	proto.Unmarshal(rec.Body.Bytes(), &resp)
	if ps := resp.GetPartialSuccess(); ps.GetRejectedSpans() != 1 || !strings.Contains(ps.GetErrorMessage(), "attributes (at most 1000)") {
		t.Fatalf("crowded span: %v", ps)
	}
}
