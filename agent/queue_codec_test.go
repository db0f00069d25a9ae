package agent

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/schemas/schemastest"
)

// queueable is s as End queues it: the writer's fields empty.
func queueable(s schemas.Span) schemas.Span {
	s.Domain, s.Service, s.Host, s.AgentVersion = "", "", "", ""
	return s
}

func TestQueueCodecRoundTrips(t *testing.T) {
	spans := schemastest.EdgeSpans()
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		spans = append(spans, schemastest.Span(r, 6))
	}
	// Encoded back to back, as in the queue; decoded into one reused span, as by the writer.
	var b []byte
	for i := range spans {
		spans[i] = queueable(spans[i])
		b = appendQueued(b, &spans[i])
	}
	var got schemas.Span
	for i := range spans {
		var err error
		if b, err = decodeQueued(b, &got); err != nil {
			t.Fatalf("span %d: %v", i, err)
		}
		// Normalize sorts maps: the bytes check that their order survives too.
		if !reflect.DeepEqual(schemastest.Normalize(got), schemastest.Normalize(spans[i])) ||
			!bytes.Equal(appendQueued(nil, &got), appendQueued(nil, &spans[i])) {
			t.Fatalf("span %d:\n got %+v\nwant %+v", i, got, spans[i])
		}
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes left over", len(b))
	}
}

// Every field of schemas.Span but the writer's four crosses the queue. Fields are filled by
// reflection, so a field added to the schema later fails here until the format carries it.
func TestQueueCodecCarriesEveryField(t *testing.T) {
	var s schemas.Span
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		fill(v.Field(i))
	}
	s = queueable(s)
	var got schemas.Span
	if _, err := decodeQueued(appendQueued(nil, &s), &got); err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("err %v\n got %+v\nwant %+v", err, got, s)
	}
}

func TestQueueDecodeRejectsDamage(t *testing.T) {
	s := queueable(schemastest.Span(rand.New(rand.NewPCG(7, 8)), 3))
	s.Events = append(s.Events, schemas.SpanEvent{Name: "e", Attributes: []schemas.KV{{Key: "k", Value: "v"}}})
	whole := appendQueued(nil, &s)
	var got schemas.Span
	for n := range len(whole) { // every truncation
		if _, err := decodeQueued(whole[:n], &got); !errors.Is(err, errQueued) {
			t.Fatalf("%d of %d bytes: err %v", n, len(whole), err)
		}
	}
	for _, damage := range []func(b []byte){
		func(b []byte) { b[72] = 5 }, // kind
		func(b []byte) { b[73] = 3 }, // status
		func(b []byte) { b[74] = 2 }, // dyed is 0 or 1
		func(b []byte) { b[75] = 1 }, // unused
		func(b []byte) { b[64], b[65], b[66], b[67] = 0xff, 0xff, 0xff, 0xff }, // tag count
		func(b []byte) { b[76], b[77], b[78], b[79] = 0xff, 0xff, 0xff, 0x7f }, // a string's length
	} {
		b := bytes.Clone(whole)
		damage(b)
		if _, err := decodeQueued(b, &got); !errors.Is(err, errQueued) {
			t.Fatalf("damaged span decoded: err %v", err)
		}
	}
}

// FuzzQueueDecode: no input panics the writer's decoder, and what it accepts is exactly what
// appendQueued would write for the span it decoded.
func FuzzQueueDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, s := range append(schemastest.EdgeSpans()[:3], schemastest.Span(r, 1), schemastest.Span(r, 4)) {
		s = queueable(s)
		f.Add(appendQueued(nil, &s))
	}
	f.Add([]byte{})
	f.Add(make([]byte, queueHeaderLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s schemas.Span
		rest, err := decodeQueued(b, &s)
		if err != nil {
			return
		}
		if used := b[:len(b)-len(rest)]; !bytes.Equal(appendQueued(nil, &s), used) {
			t.Fatalf("re-encoding differs\n got %x\nwant %x", appendQueued(nil, &s), used)
		}
	})
}
