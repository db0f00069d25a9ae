package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/gateway"
	"github.com/mercury-apm/mercury/gateway/cpu"
	"github.com/mercury-apm/mercury/gateway/degrade"
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

// BenchmarkHandlerOverhead serves the same request through each proxy's
// handler in process. The difference is the CPU the middleware chain adds;
// cpu-ns/op (process CPU, GC included) is steadier than ns/op on a shared
// machine.
func BenchmarkHandlerOverhead(b *testing.B) {
	u, _ := url.Parse("http://upstream.invalid")
	bare := httputil.NewSingleHostReverseProxy(u)
	bare.Transport = stubTransport{}
	bare.BufferPool = &bufferPool{}
	g, err := gateway.New(gateway.Config{
		Logger: slog.New(slog.DiscardHandler), Observer: gateway.NopObserver{}, CPUSource: &cpu.Fixed{},
		MaxInFlight: 100000, Transport: stubTransport{},
		Routes: []gateway.RouteConfig{{
			Name: "bench", Prefix: "/", Service: "bench", Tier: 1,
			Local:       gateway.UpstreamConfig{Instances: []string{u.String()}, Balance: "least_loaded"},
			Remote:      &gateway.UpstreamConfig{Instances: []string{u.String()}},
			Middlewares: []string{"tier", "bbr", "degrade", "ratelimit", "breaker", "dynamic_timeout", "retry"},
			RateLimit:   &gateway.RateLimitConfig{Limit: 1 << 40},
			Timeout:     gateway.TimeoutConfig{Thwm: 300 * time.Millisecond, Tmax: 500 * time.Millisecond},
			Degrade: gateway.DegradeConfig{Fallback: degrade.Fallback{Kind: degrade.Static, Body: "later"},
				Auto: &degrade.AutoConfig{ErrorRate: 0.5, TimeoutRate: 0.5}},
		}},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"gateway", g.Handler()}} {
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
