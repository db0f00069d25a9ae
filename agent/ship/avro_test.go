package ship

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/schemas/schemastest"
)

func TestSplitterSpans(t *testing.T) {
	sp, err := newSplitter(schemas.Current(schemas.NameSpan).JSON(), "trace_id")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	spans := schemastest.EdgeSpans()
	for range 200 {
		spans = append(spans, schemastest.Span(r, 5))
	}
	var data []byte
	var ends []int
	for i := range spans {
		data = schemas.AppendSpan(data, &spans[i])
		ends = append(ends, len(data))
	}
	p := 0
	for i := range spans {
		end, k0, _, err := sp.next(data, p)
		if err != nil {
			t.Fatalf("span %d: %v", i, err)
		}
		if end != ends[i] {
			t.Fatalf("span %d ends at %d, want %d", i, end, ends[i])
		}
		if !bytes.Equal(k0, spans[i].TraceID[:]) {
			t.Fatalf("span %d key %x want %x", i, k0, spans[i].TraceID)
		}
		var back schemas.Span
		if _, err := schemas.DecodeBinary(schemas.Current(schemas.NameSpan).Fingerprint, data[p:end], &back); err != nil {
			t.Fatal(err)
		}
		p = end
	}
	// Every truncation is an error, never a panic or an overrun.
	for cut := 0; cut < ends[0]; cut++ {
		if _, _, _, err := sp.next(data[:cut], 0); err == nil {
			t.Fatalf("truncated at %d: no error", cut)
		}
	}
}

func TestSplitterKeys(t *testing.T) {
	ev := schemas.Event{Service: "checkout", Host: "h1", Type: schemas.EventException, Attributes: []schemas.KV{{Key: "a", Value: "b"}}}
	hb := schemas.Heartbeat{Service: "pay", Host: "node-7", Stats: map[string]int64{"queued": 3, "dropped": 1}}
	old, err := schemas.Register(`{"type":"record","name":"Span","namespace":"mercury.v1","fields":[
		{"name":"trace_id","type":{"type":"fixed","name":"TraceID","size":16}},
		{"name":"opt","type":["null","string"]},
		{"name":"xs","type":{"type":"array","items":"long"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	oldBody, err := old.Codec.BinaryFromNative(nil, map[string]any{
		"trace_id": bytes.Repeat([]byte{0xab}, 16), "opt": map[string]any{"string": "x"}, "xs": []any{int64(1), int64(-300)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		schema    string
		rec       any
		body      []byte
		keys      []string
		want0, w1 string
		hexFirst  bool
	}{
		{name: "event", schema: schemas.Current(schemas.NameEvent).JSON(), rec: ev, keys: []string{"service"}, want0: "checkout"},
		{name: "heartbeat", schema: schemas.Current(schemas.NameHeartbeat).JSON(), rec: hb, keys: []string{"service", "host"}, want0: "pay", w1: "node-7"},
		{name: "old span schema with union and array", schema: old.JSON(), body: oldBody, keys: []string{"trace_id"}, want0: string(bytes.Repeat([]byte{0xab}, 16))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if body == nil {
				if body, err = schemas.AppendBinary(nil, tc.rec); err != nil {
					t.Fatal(err)
				}
			}
			sp, err := newSplitter(tc.schema, tc.keys...)
			if err != nil {
				t.Fatal(err)
			}
			end, k0, k1, err := sp.next(append(body, body...), 0)
			if err != nil || end != len(body) {
				t.Fatalf("end %d err %v, want %d", end, err, len(body))
			}
			if string(k0) != tc.want0 || string(k1) != tc.w1 {
				t.Fatalf("keys %q %q (%s)", k0, k1, hex.EncodeToString(k0))
			}
		})
	}
}

func BenchmarkSplitSpan(b *testing.B) {
	sp, _ := newSplitter(schemas.Current(schemas.NameSpan).JSON(), "trace_id")
	r := rand.New(rand.NewPCG(1, 2))
	var data []byte
	for range 100 {
		s := schemastest.Span(r, 4)
		data = schemas.AppendSpan(data, &s)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		p := 0
		for p < len(data) {
			p, _, _, _ = sp.next(data, p)
		}
	}
}
