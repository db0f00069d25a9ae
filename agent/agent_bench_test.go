package agent_test

import (
	"context"
	"testing"

	"github.com/mercury-apm/mercury/agent"
)

// BenchmarkStartEnd is the hot path: a span with 2 tags and 1 business key, started and ended.
// The writer drains into a real spool in b.TempDir().
func BenchmarkStartEnd(b *testing.B) {
	a, err := agent.New(agent.Config{Service: "bench", SpoolDir: b.TempDir(), QueueSize: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close(context.Background())
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, s := a.StartSpan(ctx, "GET /order/{id}")
		s.SetTag("http.method", "GET")
		s.SetTag("http.status_code", "200")
		s.SetBusinessKey("order_id", "1234567890")
		s.End()
	}
	b.StopTimer()
	st := a.Stats()
	b.ReportMetric(float64(st.Dropped[agent.DropQueueFull])/float64(b.N), "dropped/op")
}
