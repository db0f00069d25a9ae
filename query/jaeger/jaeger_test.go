package jaeger_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/query"
	"github.com/mercury-apm/mercury/query/jaeger"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// at is two hours ago, so lookbacks (relative to the wall clock) can be tested.
var at = time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Millisecond)

// order is api → order → payment for one order id, payment failing with an exception event.
func order(id byte, orderID string, start time.Time) []schemas.Span {
	tid := schemas.TraceID{0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, id}
	mk := func(sid, parent byte, service, op string, offset, dur time.Duration) schemas.Span {
		return schemas.Span{TraceID: tid, SpanID: schemas.SpanID{sid}, ParentSpanID: schemas.SpanID{parent}, Domain: "shop",
			Service: service, Operation: op, Kind: schemas.KindServer, Host: "h-" + service, StartUnixNano: start.Add(offset).UnixNano(),
			DurationNano: int64(dur), Status: schemas.StatusOK, SampleRate: 0.5, AgentVersion: "1.2.3",
			BusinessKeys: []schemas.KV{{Key: "order_id", Value: orderID}},
			Tags:         []schemas.KV{{Key: "http.method", Value: "POST"}, {Key: "order_id", Value: "shadowed by the business key"}}}
	}
	spans := []schemas.Span{
		mk(1, 0, "api", "POST /order", 0, 50*time.Millisecond),
		mk(2, 1, "order", "create", 5*time.Millisecond, 40*time.Millisecond),
		mk(3, 2, "pay/ment", "charge", 10*time.Millisecond, 20*time.Millisecond),
	}
	spans[1].Kind, spans[1].Peer = schemas.KindClient, "pay/ment"
	spans[2].Status, spans[2].ErrorType = schemas.StatusError, "DeclinedError"
	spans[2].Events = []schemas.SpanEvent{{TimeUnixNano: start.Add(15 * time.Millisecond).UnixNano(), Name: "exception",
		Attributes: []schemas.KV{{Key: "exception.type", Value: "DeclinedError"}}}}
	return spans
}

func newServer(t *testing.T) (*httptest.Server, *tracestore.Store) {
	t.Helper()
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := tracestore.New(db, db)
	spans := append(order(1, "42", at), order(2, "43", at.Add(time.Minute))...)
	dyed := order(3, "44", at)
	for i := range dyed {
		dyed[i].Service, dyed[i].Dyed = "loadtest", true
	}
	if err := st.WriteSpans(context.Background(), append(spans, dyed...)); err != nil {
		t.Fatal(err)
	}
	// Mounted by query.New with no configuration: the room is built in.
	q, err := query.New(query.Config{Traces: st, AgentConfigPath: filepath.Join(t.TempDir(), "agent-config.json")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(q.Handler())
	t.Cleanup(srv.Close)
	return srv, st
}

// get decodes the response; data is decoded into data when it is not nil.
func get(t *testing.T, srv *httptest.Server, path string, data any) (int, jaeger.Response) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: content type %q", path, ct)
	}
	var raw struct {
		jaeger.Response
		Data json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if data != nil {
		if err := json.Unmarshal(raw.Data, data); err != nil {
			t.Fatalf("%s: data %s: %v", path, raw.Data, err)
		}
	}
	if resp.StatusCode >= 400 && string(raw.Data) != "null" {
		t.Errorf("%s: error with data %s", path, raw.Data)
	}
	return resp.StatusCode, raw.Response
}

func TestServicesAndOperations(t *testing.T) {
	srv, _ := newServer(t)
	var services []string
	code, res := get(t, srv, "/api/services", &services)
	// The dyed service is a load test: not listed.
	if code != 200 || !slices.Equal(services, []string{"api", "order", "pay/ment"}) || res.Total != 3 || res.Errors != nil {
		t.Fatalf("services: %d %q %+v", code, services, res)
	}
	var ops []string
	if code, _ := get(t, srv, "/api/services/"+url.PathEscape("pay/ment")+"/operations", &ops); code != 200 || !slices.Equal(ops, []string{"charge"}) {
		t.Fatalf("operations: %d %q", code, ops)
	}
	ops = nil
	if code, _ := get(t, srv, "/api/services/nobody/operations", &ops); code != 200 || ops == nil || len(ops) != 0 {
		t.Fatalf("unknown service: %d %q (want an empty list)", code, ops)
	}
}

func TestSearchByTags(t *testing.T) {
	srv, _ := newServer(t)
	var trs []jaeger.Trace
	code, _ := get(t, srv, "/api/traces?"+url.Values{"tags": {`{"order_id":"42"}`}, "lookback": {"custom"}}.Encode(), &trs)
	if code != 200 || len(trs) != 1 {
		t.Fatalf("search: %d %d traces", code, len(trs))
	}
	tr := trs[0]
	if tr.TraceID != "0000000000000000090909090909090"+"1" || len(tr.Spans) != 3 || len(tr.Processes) != 3 {
		t.Fatalf("trace: %+v", tr)
	}
	root, client, failed := tr.Spans[0], tr.Spans[1], tr.Spans[2]
	if root.OperationName != "POST /order" || len(root.References) != 0 || root.StartTime != at.UnixMicro() || root.Duration != 50000 {
		t.Fatalf("root: %+v", root)
	}
	if len(client.References) != 1 || client.References[0] != (jaeger.Reference{RefType: "CHILD_OF", TraceID: tr.TraceID, SpanID: root.SpanID}) {
		t.Fatalf("references: %+v", client.References)
	}
	if p := tr.Processes[failed.ProcessID]; p.ServiceName != "pay/ment" || tag(p.Tags, "hostname") != "h-pay/ment" || tag(p.Tags, jaeger.TagDomain) != "shop" {
		t.Fatalf("process: %+v", p)
	}
	if tag(root.Tags, "order_id") != "42" || tag(root.Tags, "http.method") != "POST" || tag(root.Tags, "span.kind") != "server" ||
		tag(root.Tags, "otel.status_code") != "OK" || tag(root.Tags, jaeger.TagSampleRate) != 0.5 {
		t.Fatalf("root tags: %+v", root.Tags)
	}
	if n := count(root.Tags, "order_id"); n != 1 {
		t.Fatalf("order_id appears %d times: the business key shadows the tag", n)
	}
	if tag(client.Tags, "span.kind") != "client" || tag(client.Tags, "peer.service") != "pay/ment" {
		t.Fatalf("client tags: %+v", client.Tags)
	}
	if tag(failed.Tags, "error") != true || tag(failed.Tags, "error.type") != "DeclinedError" || len(failed.Logs) != 1 ||
		failed.Logs[0].Timestamp != at.Add(15*time.Millisecond).UnixMicro() || tag(failed.Logs[0].Fields, "event") != "exception" {
		t.Fatalf("failed span: %+v", failed)
	}
	for _, kv := range failed.Tags {
		if kv.Type == "" {
			t.Errorf("tag %s without a type", kv.Key)
		}
	}

	search := func(v url.Values) []string {
		t.Helper()
		var trs []jaeger.Trace
		if code, res := get(t, srv, "/api/traces?"+v.Encode(), &trs); code != 200 {
			t.Fatalf("%v: %d %+v", v, code, res.Errors)
		}
		var ids []string
		for _, tr := range trs {
			ids = append(ids, tr.TraceID[31:])
		}
		return ids
	}
	us := func(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }
	cases := []struct {
		v    url.Values
		want []string
	}{
		{url.Values{"service": {"api"}}, []string{"2", "1"}},
		{url.Values{"service": {"api"}, "limit": {"1"}}, []string{"2"}},
		{url.Values{"service": {"api"}, "tags": {""}, "minDuration": {""}, "maxDuration": {""}, "lookback": {"custom"}}, []string{"2", "1"}},
		{url.Values{"service": {"order"}, "operation": {"create"}, "tag": {"order_id:43"}}, []string{"2"}},
		{url.Values{"service": {"api"}, "tags": {`{"error":"true"}`}}, nil},
		{url.Values{"service": {"pay/ment"}, "tags": {`{"error":"true"}`}}, []string{"2", "1"}},
		{url.Values{"service": {"api"}, "minDuration": {"50ms"}, "maxDuration": {"1s"}}, []string{"2", "1"}},
		{url.Values{"service": {"api"}, "minDuration": {"51ms"}}, nil},
		{url.Values{"service": {"api"}, "start": {us(at.Add(time.Second))}, "end": {us(at.Add(time.Hour))}}, []string{"2"}},
		{url.Values{"service": {"api"}, "start": {us(at)}, "end": {us(at)}}, []string{"1"}},
		// lookback counts back from end when start is missing.
		{url.Values{"service": {"api"}, "end": {us(at.Add(30 * time.Second))}, "lookback": {"1m"}}, []string{"1"}},
		{url.Values{"traceID": {"9090909090909" + "02", "ff"}}, []string{"2"}},
	}
	for _, c := range cases {
		if got := search(c.v); !slices.Equal(got, c.want) {
			t.Errorf("%v: got %v, want %v", c.v, got, c.want)
		}
	}
	// A missing trace id is reported beside the data, as Jaeger does.
	if _, res := get(t, srv, "/api/traces?traceID=ff", nil); len(res.Errors) != 1 || res.Errors[0].TraceID != strings.Repeat("0", 30)+"ff" {
		t.Fatalf("missing trace id: %+v", res)
	}
}

func TestLookbackIsRelativeToNow(t *testing.T) {
	srv, _ := newServer(t)
	// The fixture started two hours ago: a 1h lookback finds nothing, 1d finds both traces, and
	// so does the default (24h, as Mercury's own search).
	for lb, want := range map[string]int{"1h": 0, "1d": 2, "3h": 2, "": 2, "custom": 2} {
		var trs []jaeger.Trace
		if code, _ := get(t, srv, "/api/traces?service=api&lookback="+lb, &trs); code != 200 || len(trs) != want {
			t.Errorf("lookback %s: %d, %d traces, want %d", lb, code, len(trs), want)
		}
	}
}

func TestTraceByID(t *testing.T) {
	srv, _ := newServer(t)
	var trs []jaeger.Trace
	// Short ids are the low bytes (64-bit tracers), and the case does not matter.
	if code, _ := get(t, srv, "/api/traces/9090909090909"+"01?start=1&end=2", &trs); code != 200 || len(trs) != 1 || len(trs[0].Spans) != 3 {
		t.Fatalf("by id: %d %+v", code, trs)
	}
	if code, res := get(t, srv, "/api/traces/"+strings.Repeat("ab", 16), nil); code != 404 || res.Errors[0].Code != 404 || res.Errors[0].Msg != "trace not found" {
		t.Fatalf("missing: %d %+v", code, res)
	}
	for _, bad := range []string{"xyz", strings.Repeat("1", 33), "01?start=soon", "01?raw=true"} {
		if code, res := get(t, srv, "/api/traces/"+bad, nil); code != 400 || len(res.Errors) != 1 || res.Errors[0].Code != 400 {
			t.Errorf("%s: %d %+v", bad, code, res)
		}
	}
}

func TestBadSearches(t *testing.T) {
	srv, _ := newServer(t)
	cases := map[string]string{
		"service=api&pretty=1":                      `unknown parameter "pretty"`,
		"":                                          "name a business key, a service, an error type or an event",
		"service=api&tags=order_id%3D1":             `tags "order_id=1": want a JSON object of strings`,
		`service=api&tags={"n":1}`:                  "want a JSON object of strings",
		"service=api&tag=order_id":                  `tag "order_id": want key:value`,
		`service=api&tags={"error":"false"}`:        "only error=true can be searched",
		"service=api&start=yesterday":               `start "yesterday": want Unix microseconds`,
		"service=api&end=99999999999999999":         "want Unix microseconds (years 1678-2262)",
		"service=api&lookback=forever":              `lookback "forever"`,
		"service=api&minDuration=fast":              `minDuration "fast"`,
		"service=api&minDuration=2s&maxDuration=1s": "max duration 1s below min duration 2s",
		"service=api&limit=5000":                    "limit \"5000\": want a whole number from 0 to 1000",
		"operation=create":                          `operation "create" needs a service`,
		"traceID=nothex":                            "traceID: trace id",
	}
	for q, want := range cases {
		code, res := get(t, srv, "/api/traces?"+strings.ReplaceAll(q, `"`, "%22"), nil)
		if code != 400 || len(res.Errors) != 1 || res.Errors[0].Code != 400 || !strings.Contains(res.Errors[0].Msg, want) {
			t.Errorf("%s: %d %+v, want 400 with %q", q, code, res.Errors, want)
		}
	}
	if code, res := get(t, srv, "/api/services?x=1", nil); code != 400 || !strings.Contains(res.Errors[0].Msg, `unknown parameter "x"`) {
		t.Errorf("services with a parameter: %d %+v", code, res)
	}
	if code, res := get(t, srv, "/api/services/"+url.PathEscape("\xff")+"/operations", nil); code != 400 || !strings.Contains(res.Errors[0].Msg, "not UTF-8") {
		t.Errorf("operations of a non-UTF-8 service: %d %+v", code, res)
	}
}

func tag(kvs []jaeger.KeyValue, key string) any {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

func count(kvs []jaeger.KeyValue, key string) int {
	n := 0
	for _, kv := range kvs {
		if kv.Key == key {
			n++
		}
	}
	return n
}
