package schemas_test

import (
	"testing"

	"github.com/mercury-apm/mercury/schemas"
)

func benchSpan() schemas.Span {
	return schemas.Span{
		TraceID: schemas.TraceID{1, 2, 3}, SpanID: schemas.SpanID{4, 5}, Domain: "shop", Service: "order",
		Operation: "GET /order/{id}", Kind: schemas.KindServer, Host: "host-1", StartUnixNano: 1700000000000000000,
		DurationNano: 1234567, Status: schemas.StatusOK, StatusCode: 200, SampleRate: 1,
		BusinessKeys: []schemas.KV{{"order_id", "1234567890"}},
		Tags:         []schemas.KV{{"http.method", "GET"}, {"http.route", "/order/{id}"}},
		AgentVersion: "0.1.0",
	}
}

func BenchmarkAppendSpan(b *testing.B) {
	s := benchSpan()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = schemas.AppendSpan(buf[:0], &s)
	}
	b.ReportMetric(float64(len(buf)), "bytes/span")
}

func BenchmarkGoavroSpan(b *testing.B) {
	s := benchSpan()
	c := schemas.Current(schemas.NameSpan).Codec
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = c.BinaryFromNative(buf[:0], schemas.ToNative(&s)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSpan(b *testing.B) {
	s := benchSpan()
	body := schemas.AppendSpan(nil, &s)
	var out schemas.Span
	b.ReportAllocs()
	for b.Loop() {
		if _, err := schemas.DecodeSpan(body, &out); err != nil {
			b.Fatal(err)
		}
	}
}
