// Package schemastest makes random and edge-case records for tests across the project.
package schemastest

import (
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/mercury-apm/mercury/schemas"
)

var alphabet = []string{"a", "z", "0", "_", "-", "é", "订单", "🙂", " ", "\x00", "/"}

// String returns a random string of up to max runes drawn from ASCII and multi-byte unicode.
func String(r *rand.Rand, max int) string {
	n := r.IntN(max + 1)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// KVs returns n entries with unique keys.
func KVs(r *rand.Rand, n int) []schemas.KV {
	kvs := make([]schemas.KV, 0, n)
	for len(kvs) < n {
		kvs = schemas.Set(kvs, String(r, 8)+string(rune('A'+len(kvs)%26)), String(r, 20))
	}
	return kvs
}

// Span returns a random span; maxMap bounds the entries of each map.
func Span(r *rand.Rand, maxMap int) schemas.Span {
	var s schemas.Span
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}
	fill(s.TraceID[:])
	fill(s.SpanID[:])
	if r.IntN(3) > 0 {
		fill(s.ParentSpanID[:])
	}
	s.Domain, s.Service, s.Operation = String(r, 6), String(r, 10), String(r, 30)
	s.Kind = schemas.SpanKind(r.IntN(5))
	s.Peer, s.Host = String(r, 8), String(r, 8)
	s.StartUnixNano = r.Int64() - math.MaxInt64/2
	s.DurationNano = r.Int64N(1 << 40)
	s.Status = schemas.Status(r.IntN(3))
	s.StatusCode = int32(r.Uint32())
	s.ErrorType = String(r, 10)
	s.SampleRate = r.Float64()
	s.Dyed = r.IntN(2) == 1
	s.BusinessKeys = KVs(r, r.IntN(maxMap+1))
	s.Tags = KVs(r, r.IntN(maxMap+1))
	for i := r.IntN(3); i > 0; i-- {
		s.Events = append(s.Events, schemas.SpanEvent{TimeUnixNano: r.Int64(), Name: String(r, 10), Attributes: KVs(r, r.IntN(maxMap+1))})
	}
	s.AgentVersion = String(r, 5)
	return s
}

// EdgeSpans returns spans at the edges of every field: zero ids, empty and large maps, unicode,
// extreme numbers.
func EdgeSpans() []schemas.Span {
	var max schemas.Span
	for i := range max.TraceID {
		max.TraceID[i] = 0xff
	}
	for i := range max.SpanID {
		max.SpanID[i], max.ParentSpanID[i] = 0xff, 0xff
	}
	max.Kind, max.Status = schemas.KindConsumer, schemas.StatusError
	max.StartUnixNano, max.DurationNano, max.StatusCode = math.MaxInt64, math.MaxInt64, math.MaxInt32
	max.SampleRate, max.Dyed = math.MaxFloat64, true
	min := schemas.Span{StartUnixNano: math.MinInt64, DurationNano: math.MinInt64, StatusCode: math.MinInt32, SampleRate: math.SmallestNonzeroFloat64}
	big := strings.Repeat("订单🙂x", 20000)
	unicode := schemas.Span{Domain: "支付", Service: "σέρβις", Operation: "GET /订单/{id}", BusinessKeys: []schemas.KV{{Key: "订单号", Value: big}}, SampleRate: math.Inf(1)}
	large := schemas.Span{BusinessKeys: make([]schemas.KV, 0, 1000)}
	for i := 0; i < 1000; i++ {
		large.BusinessKeys = append(large.BusinessKeys, schemas.KV{Key: strings.Repeat("k", i%7) + string(rune(0x4e00+i)), Value: ""})
	}
	return []schemas.Span{{}, max, min, unicode, large}
}

// Normalize makes spans that carry the same data compare equal with reflect.DeepEqual: maps
// as sets (Go, and so goavro, orders maps at random), nil and empty slices alike, NaN rates
// equal. s's slices are copied, not sorted in place.
func Normalize(s schemas.Span) schemas.Span {
	sortKV := func(kvs []schemas.KV) []schemas.KV {
		if len(kvs) == 0 {
			return nil
		}
		out := append([]schemas.KV(nil), kvs...)
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
		return out
	}
	s.BusinessKeys, s.Tags = sortKV(s.BusinessKeys), sortKV(s.Tags)
	if len(s.Events) == 0 {
		s.Events = nil
	}
	s.Events = append([]schemas.SpanEvent(nil), s.Events...)
	for i := range s.Events {
		s.Events[i].Attributes = sortKV(s.Events[i].Attributes)
	}
	if math.IsNaN(s.SampleRate) {
		s.SampleRate = -1
	}
	return s
}
