package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/internal/cputime"
)

// BenchmarkAgentObserver is the tracing cost the gateway adds per request:
// RequestStart, Propagate and RequestDone with a real agent writing to a
// temporary spool. cpu-ns/op is process CPU, so it includes the agent's
// background writer masking, encoding and appending the span; ns/op and
// allocs/op are the request goroutine's share.
func BenchmarkAgentObserver(b *testing.B) {
	route := RouteInfo{Name: "songs", Service: "song-svc", Tier: 1, Region: "sz"}
	done := Outcome{Method: "GET", Status: 200, Upstream: UpstreamLocal}
	for _, c := range []struct {
		name string
		rate float64
		hdr  []string
	}{
		{"root", 1, nil},
		{"continued", 1, []string{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate", "mercury=r:1;o:shop"}},
		{"dyed", 1, []string{DyeHeader, "1"}},
		{"unsampled", 1e-9, nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			a, err := agent.New(agent.Config{Service: "gateway", SpoolDir: b.TempDir(), SampleRate: c.rate})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close(context.Background())
			o := NewAgentObserver(a)
			req := httptest.NewRequest("GET", "/song/42", nil)
			for i := 0; i+1 < len(c.hdr); i += 2 {
				req.Header.Set(c.hdr[i], c.hdr[i+1])
			}
			out := http.Header{}
			b.ReportAllocs()
			stop := cputime.Measure(b)
			for b.Loop() {
				ctx := o.RequestStart(req.Context(), route, req)
				o.Propagate(ctx, out)
				o.RequestDone(ctx, route, done)
			}
			stop()
			st := a.Stats()
			b.ReportMetric(float64(st.Dropped[agent.DropQueueFull])/float64(b.N), "dropped/op")
		})
	}
}
