package schemas_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/schemas/schemastest"
)

func spanCodec() *goavro.Codec { return schemas.Current(schemas.NameSpan).Codec }

func mapsAtMostOne(s *schemas.Span) bool {
	if len(s.BusinessKeys) > 1 || len(s.Tags) > 1 {
		return false
	}
	for _, e := range s.Events {
		if len(e.Attributes) > 1 {
			return false
		}
	}
	return true
}

// checkAgainstGoavro asserts the fast codec and goavro agree on s: identical bytes when map
// order cannot differ (goavro encodes Go maps in random order), otherwise identical length and
// each side decoding the other's bytes to the same record.
func checkAgainstGoavro(t *testing.T, s schemas.Span) {
	t.Helper()
	fast := schemas.AppendSpan(nil, &s)
	ref, err := spanCodec().BinaryFromNative(nil, schemas.ToNative(&s))
	if err != nil {
		t.Fatalf("goavro encode: %v", err)
	}
	if mapsAtMostOne(&s) && !bytes.Equal(fast, ref) {
		t.Fatalf("bytes differ\nfast   %x\ngoavro %x", fast, ref)
	}
	if len(fast) != len(ref) {
		t.Fatalf("length differs: fast %d goavro %d", len(fast), len(ref))
	}
	var got schemas.Span
	if rest, err := schemas.DecodeSpan(ref, &got); err != nil || len(rest) != 0 {
		t.Fatalf("fast decode of goavro bytes: %v (rest %d)", err, len(rest))
	}
	if !reflect.DeepEqual(schemastest.Normalize(got), schemastest.Normalize(s)) {
		t.Fatalf("fast decode of goavro bytes:\n got %+v\nwant %+v", got, s)
	}
	var aliased schemas.Span
	if rest, err := schemas.DecodeSpanAliased(ref, &aliased); err != nil || len(rest) != 0 || !reflect.DeepEqual(aliased, got) {
		t.Fatalf("aliased decode differs: %v\n got %+v\nwant %+v", err, aliased, got)
	}
	n, rest, err := spanCodec().NativeFromBinary(fast)
	if err != nil || len(rest) != 0 {
		t.Fatalf("goavro decode of fast bytes: %v", err)
	}
	var back schemas.Span
	if err := schemas.FromNative(n, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(schemastest.Normalize(back), schemastest.Normalize(s)) {
		t.Fatalf("goavro decode of fast bytes:\n got %+v\nwant %+v", back, s)
	}
}

func TestSpanCodecMatchesGoavro(t *testing.T) {
	for _, s := range schemastest.EdgeSpans() {
		checkAgainstGoavro(t, s)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		checkAgainstGoavro(t, schemastest.Span(r, 1)) // byte-exact
		checkAgainstGoavro(t, schemastest.Span(r, 6))
	}
}

func FuzzSpanCodec(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range append(schemastest.EdgeSpans()[:3], schemastest.Span(r, 1), schemastest.Span(r, 3)) {
		f.Add(schemas.AppendSpan(nil, &s))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s schemas.Span
		rest, err := schemas.DecodeSpan(b, &s)
		_, grest, gerr := spanCodec().NativeFromBinary(b)
		if (err == nil) != (gerr == nil) {
			// goavro tolerates booleans other than 0/1 and enum indexes it checks later; only a
			// record the fast decoder accepts must be accepted by goavro.
			if err == nil {
				t.Fatalf("fast accepted, goavro rejected: %v", gerr)
			}
			return
		}
		if err != nil {
			return
		}
		if len(rest) != len(grest) {
			t.Fatalf("consumed differently: fast rest %d goavro rest %d", len(rest), len(grest))
		}
		var aliased schemas.Span
		if arest, aerr := schemas.DecodeSpanAliased(b, &aliased); aerr != nil || len(arest) != len(rest) || !reflect.DeepEqual(aliased, s) {
			t.Fatalf("aliased decode differs from the copying one: %v", aerr)
		}
		// Both codecs read the same record; re-encoding round-trips through both.
		checkAgainstGoavro(t, s)
	})
}

func TestSingleObjectRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	span := schemastest.Span(r, 3)
	recs := []struct{ in, out any }{
		{&span, &schemas.Span{}},
		{&schemas.Event{TimeUnixNano: 7, Service: "order", Type: schemas.EventException, Name: "io.Timeout", Message: "x", Stack: "main.go:1", TraceID: span.TraceID, Dyed: true, Attributes: []schemas.KV{{"a", "b"}}}, &schemas.Event{}},
		{&schemas.Heartbeat{TimeUnixNano: 1, Service: "s", PID: 42, Stats: map[string]int64{"queued": 3, "dropped_queue_full": 1}}, &schemas.Heartbeat{}},
		{&schemas.MetricPartial{SeriesID: "x", Kind: schemas.KindClient, CountUnits: 2560, Host: "h", Dyed: true, SumUnits: make([]byte, 16), MinNano: 3, Sketch: []byte{1, 2}, SourcePartition: 4, LastOffset: 99}, &schemas.MetricPartial{}},
		{&schemas.MetricPoint{SeriesID: "x", MinuteUnix: 60, Revision: 2, Sketch: []byte{}, SumUnits: []byte{}}, &schemas.MetricPoint{}},
		{&schemas.Alert{ID: "a", Level: "alarm", Count: 5, Labels: []schemas.KV{{"service", "order"}}}, &schemas.Alert{}},
	}
	for _, rc := range recs {
		msg, err := schemas.Marshal(rc.in)
		if err != nil {
			t.Fatal(err)
		}
		if msg[0] != 0xC3 || msg[1] != 0x01 {
			t.Fatalf("%T: no single-object marker: %x", rc.in, msg[:2])
		}
		if err := schemas.Unmarshal(msg, rc.out); err != nil {
			t.Fatalf("%T: %v", rc.in, err)
		}
		if sp, ok := rc.out.(*schemas.Span); ok {
			if !reflect.DeepEqual(schemastest.Normalize(*sp), schemastest.Normalize(span)) {
				t.Fatalf("span round trip:\n got %+v\nwant %+v", *sp, span)
			}
			continue
		}
		if !reflect.DeepEqual(rc.in, rc.out) {
			t.Fatalf("%T round trip:\n got %+v\nwant %+v", rc.in, rc.out, rc.in)
		}
	}
}

func TestUnmarshalErrors(t *testing.T) {
	span := schemas.Span{Service: "a"}
	good, _ := schemas.Marshal(&span)
	unknown := append([]byte{}, good...)
	unknown[5] ^= 0xff
	cases := []struct {
		name string
		msg  []byte
		into any
		want error
	}{
		{"empty", nil, &schemas.Span{}, schemas.ErrNotSingleObject},
		{"json", []byte(`{"service":"a"}`), &schemas.Span{}, schemas.ErrNotSingleObject},
		{"unknown fingerprint", unknown, &schemas.Span{}, schemas.ErrUnknownSchema},
		{"truncated", good[:len(good)-3], &schemas.Span{}, schemas.ErrCorrupt},
		{"wrong type", good, &schemas.Event{}, nil},
		{"trailing", append(append([]byte{}, good...), 1, 2), &schemas.Span{}, nil},
	}
	for _, c := range cases {
		err := schemas.Unmarshal(c.msg, c.into)
		if err == nil {
			t.Errorf("%s: no error", c.name)
		} else if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// An older writer (span.v0: no dyed, no agent_version) still decodes with this build.
func TestOldWriterDecodes(t *testing.T) {
	text, err := os.ReadFile("avro/history/span.v0.avsc")
	if err != nil {
		t.Fatal(err)
	}
	old, err := goavro.NewCodec(string(text))
	if err != nil {
		t.Fatal(err)
	}
	v0, ok := schemas.Lookup(old.Rabin)
	if !ok {
		t.Fatal("span.v0 is not registered")
	}
	if v0.Fingerprint == schemas.Current(schemas.NameSpan).Fingerprint {
		t.Fatal("v0 and current share a fingerprint")
	}
	native := map[string]any{
		"trace_id": make([]byte, 16), "span_id": []byte{1, 2, 3, 4, 5, 6, 7, 8}, "parent_span_id": make([]byte, 8),
		"domain": "shop", "service": "order", "operation": "GET /order/{id}", "kind": "SERVER", "peer": "", "host": "h1",
		"start_unix_nano": int64(10), "duration_nano": int64(20), "status": "OK", "status_code": int32(200), "error_type": "",
		"sample_rate": 0.5, "business_keys": map[string]any{"order_id": "12345"}, "tags": map[string]any{}, "events": []any{},
	}
	msg, err := old.SingleFromNative(nil, native)
	if err != nil {
		t.Fatal(err)
	}
	var s schemas.Span
	if err := schemas.Unmarshal(msg, &s); err != nil {
		t.Fatal(err)
	}
	if s.Service != "order" || s.Dyed || s.AgentVersion != "" || s.SampleRate != 0.5 || s.Kind != schemas.KindServer {
		t.Fatalf("decoded %+v", s)
	}
	if v, _ := schemas.Get(s.BusinessKeys, "order_id"); v != "12345" {
		t.Fatalf("business key lost: %+v", s.BusinessKeys)
	}
}

// Fields added after a schema's first version must default to the Go zero value: the reflection
// mapper leaves fields an older writer lacked at zero, which is then the right default.
func TestDefaultsAreZeroValues(t *testing.T) {
	zero := map[string]bool{`false`: true, `""`: true, `0`: true, `0.0`: true, `null`: true, `[]`: true, `{}`: true}
	files, _ := filepath.Glob("avro/*.avsc")
	for _, f := range files {
		text, _ := os.ReadFile(f)
		var rec struct {
			Fields []struct {
				Name    string
				Default json.RawMessage
			}
		}
		if err := json.Unmarshal(text, &rec); err != nil {
			t.Fatal(err)
		}
		for _, fl := range rec.Fields {
			if fl.Default != nil && !zero[string(fl.Default)] {
				t.Errorf("%s: field %s defaults to %s, not the zero value", f, fl.Name, fl.Default)
			}
		}
	}
}

func TestSkipAndSplit(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	var data []byte
	var lens []int
	spans := append(schemastest.EdgeSpans(), schemastest.Span(r, 4), schemastest.Span(r, 0))
	for i := range spans {
		before := len(data)
		data = schemas.AppendSpan(data, &spans[i])
		lens = append(lens, len(data)-before)
	}
	recs, err := schemas.SplitRecords(schemas.Current(schemas.NameSpan), data, int64(len(spans)), nil)
	if err != nil || len(recs) != len(spans) {
		t.Fatalf("split: %d records, %v", len(recs), err)
	}
	for i, rec := range recs {
		if len(rec) != lens[i] {
			t.Fatalf("record %d: %d bytes, want %d", i, len(rec), lens[i])
		}
	}
	if _, err := schemas.SplitRecords(schemas.Current(schemas.NameSpan), data[:len(data)-1], int64(len(spans)), nil); !errors.Is(err, schemas.ErrCorrupt) {
		t.Fatalf("short block: %v", err)
	}
	ev := schemas.Event{Service: "x", Attributes: []schemas.KV{{"a", "b"}}}
	body, _ := schemas.AppendBinary(nil, &ev)
	two := append(append([]byte{}, body...), body...)
	if recs, err := schemas.SplitRecords(schemas.Current(schemas.NameEvent), two, 2, nil); err != nil || len(recs) != 2 || len(recs[0]) != len(body) {
		t.Fatalf("events: %d, %v", len(recs), err)
	}
}

func TestParseIDs(t *testing.T) {
	tid, err := schemas.ParseTraceID("4bf92f3577b34da6a3ce929d0e0e4736")
	if err != nil || tid.String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("trace id: %v %v", tid, err)
	}
	sid, err := schemas.ParseSpanID("00f067aa0ba902b7")
	if err != nil || sid.String() != "00f067aa0ba902b7" {
		t.Fatalf("span id: %v %v", sid, err)
	}
	for _, bad := range []string{"", "4bf9", "zz" + "f92f3577b34da6a3ce929d0e0e4736"} {
		if _, err := schemas.ParseTraceID(bad); err == nil {
			t.Errorf("ParseTraceID(%q) accepted", bad)
		}
	}
	if _, err := schemas.ParseSpanID("00f067aa0ba902b"); err == nil {
		t.Error("short span id accepted")
	}
}

// The first metric writers (float counts, no host) still decode: the new fields take their
// defaults and the dropped float fields are skipped.
func TestOldMetricWritersDecode(t *testing.T) {
	for _, c := range []struct {
		file   string
		native map[string]any
		into   any
	}{
		{"avro/history/metric_partial.v0.avsc", map[string]any{
			"series_id": "s", "domain": "d", "service": "svc", "operation": "op", "kind": "SERVER", "peer": "",
			"window_start_unix_milli": int64(20000), "window_millis": int32(20000), "count": 2.0, "errors": 0.0,
			"sum_nano": 3.0, "min_nano": int64(1), "max_nano": int64(2), "sketch": []byte{}, "source_partition": int32(1),
			"first_offset": int64(5), "last_offset": int64(9)}, &schemas.MetricPartial{}},
		{"avro/history/metric_point.v0.avsc", map[string]any{
			"series_id": "s", "domain": "d", "service": "svc", "operation": "op", "kind": "SERVER", "peer": "",
			"minute_unix": int64(60), "count": 2.0, "errors": 0.0, "sum_nano": 3.0, "min_nano": int64(1), "max_nano": int64(2),
			"sketch": []byte{}, "revision": int32(3)}, &schemas.MetricPoint{}},
	} {
		text, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		old, err := goavro.NewCodec(string(text))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := old.SingleFromNative(nil, c.native)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemas.Unmarshal(msg, c.into); err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		switch v := c.into.(type) {
		case *schemas.MetricPartial:
			if v.Service != "svc" || v.LastOffset != 9 || v.Host != "" || v.CountUnits != 0 {
				t.Errorf("partial v0 decoded as %+v", v)
			}
		case *schemas.MetricPoint:
			if v.Revision != 3 || v.Count != 2 || v.Host != "" {
				t.Errorf("point v0 decoded as %+v", v)
			}
		}
	}
}
