package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/mercury-apm/mercury/gateway"
)

// stubTransport answers every request in memory, so the handler benchmarks
// below measure the proxies' own CPU cost without network or upstream noise.
type stubTransport struct{}

func (stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(bytes.NewReader([]byte("ok"))),
		ContentLength: 2, Request: r}, nil
}

// stubGateway is fullConfig on the stub transport.
func stubGateway(b *testing.B, u *url.URL, obs gateway.Observer) *gateway.Gateway {
	cfg := fullConfig(u.String(), obs)
	cfg.Transport = stubTransport{}
	return newGateway(b, cfg)
}

// BenchmarkHandlerOverhead serves the same request through each proxy's
// handler in process. The differences are the CPU the middleware chain and
// the tracing add; cpu-ns/op (process CPU, GC and the agent's writer
// included) is steadier than ns/op on a shared machine.
func BenchmarkHandlerOverhead(b *testing.B) {
	u, _ := url.Parse("http://upstream.invalid")
	bare := httputil.NewSingleHostReverseProxy(u)
	bare.Transport = stubTransport{}
	bare.BufferPool = &bufferPool{}
	a := tracingAgent(b)
	for _, c := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", bare},
		{"gateway", stubGateway(b, u, gateway.NopObserver{}).Handler()},
		{"gateway+agent", stubGateway(b, u, gateway.NewAgentObserver(a)).Handler()},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/x", nil)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
