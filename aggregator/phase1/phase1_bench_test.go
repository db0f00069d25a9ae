package phase1

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// BenchmarkDecodeAndFold is phase 1's per-span work on one core: decode the Kafka value
// (Avro single-object) and fold the span into its range, with 320 series (8 services × 4
// operations × 2 hosts × server/client, plus edges), near-ordered event times and a flush
// every 100,000 spans. Broker I/O is not included.
func BenchmarkDecodeAndFold(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 100_000
	vals := make([][]byte, n)
	base := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC).UnixNano()
	for i := range vals {
		s := schemas.Span{Domain: "shop", Service: fmt.Sprintf("svc%d", rng.IntN(8)), Operation: fmt.Sprintf("GET /r%d/{id}", rng.IntN(4)),
			Kind: schemas.KindServer, Host: fmt.Sprintf("h%d", rng.IntN(2)),
			StartUnixNano: base + int64(i)*int64(time.Millisecond) - rng.Int64N(int64(time.Second)),
			DurationNano:  int64(math.Exp(rng.NormFloat64()*1.2 + 14)), SampleRate: 1, Status: schemas.StatusOK, StatusCode: 200,
			BusinessKeys: []schemas.KV{{Key: "order_id", Value: fmt.Sprint(100000 + i)}}, AgentVersion: "0.3.0"}
		if rng.IntN(4) == 0 {
			s.Kind, s.Operation, s.Peer = schemas.KindClient, "HTTP POST", "payment"
		}
		for j := range s.TraceID {
			s.TraceID[j] = byte(rng.Uint32())
		}
		s.SpanID[0], s.SpanID[7] = byte(i), byte(i>>8)
		vals[i] = schemas.AppendSpan(schemas.AppendSingleHeader(nil, schemas.Current(schemas.NameSpan).Fingerprint), &s)
	}
	r := New(Config{}, 0, 0)
	var span schemas.Span
	var partials []schemas.MetricPartial
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_, body, err := schemas.SingleFingerprint(vals[i%n])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := schemas.DecodeSpanAliased(body, &span); err != nil {
			b.Fatal(err)
		}
		r.Add(int64(i), &span, base+int64(n)*int64(time.Millisecond))
		if i%n == n-1 {
			partials = r.Partials(partials[:0])
			r.Next()
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "spans/s")
}
