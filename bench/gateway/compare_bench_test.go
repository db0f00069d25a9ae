// Package gateway compares Mercury's gateway, with every middleware on,
// against a bare httputil.ReverseProxy in front of the same loopback
// upstream, in one run. Throughput is measured at saturation, latency with a
// single client so that queueing does not hide the per-request cost.
//
//	cd bench && go test ./gateway -run '^$' -bench Compare -benchtime 1x
package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/gateway"
	"github.com/mercury-apm/mercury/gateway/cpu"
	"github.com/mercury-apm/mercury/gateway/degrade"
)

const (
	saturationClients = 32
	phase             = 2 * time.Second // per throughput phase
	rounds            = 3               // bare/gateway alternations
	latencyRequests   = 4000            // per latency phase
)

func upstream() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	}))
}

// bareProxy gets what the gateway has below its middlewares — the same
// upstream connection pool size and a copy-buffer pool — so the comparison
// measures the middlewares. With DefaultTransport's 2 idle connections per
// host and a fresh 32 KiB buffer per request it would lose by 30–40 % for
// those reasons alone.
func bareProxy(up string) *httptest.Server {
	u, _ := url.Parse(up)
	p := httputil.NewSingleHostReverseProxy(u)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost, t.MaxIdleConns = 256, 1024
	p.Transport = t
	p.BufferPool = &bufferPool{}
	return httptest.NewServer(p)
}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

// fullGateway enables every middleware on one route. The CPU source is fixed
// below BBR's threshold and the limits are far above the offered load, so
// every decision path runs and nothing is shed: the figure is pure overhead.
func fullGateway(b *testing.B, up string) (*httptest.Server, *gateway.Gateway) {
	g, err := gateway.New(gateway.Config{
		Logger:      slog.New(slog.DiscardHandler),
		Observer:    gateway.NopObserver{},
		CPUSource:   &cpu.Fixed{},
		MaxInFlight: 100000,
		Routes: []gateway.RouteConfig{{
			Name: "bench", Prefix: "/", Service: "bench", Tier: 1,
			Local:       gateway.UpstreamConfig{Instances: []string{up}, Balance: "least_loaded"},
			Remote:      &gateway.UpstreamConfig{Instances: []string{up}},
			Middlewares: []string{"tier", "bbr", "degrade", "ratelimit", "breaker", "dynamic_timeout", "retry"},
			RateLimit:   &gateway.RateLimitConfig{Limit: 1 << 40},
			Timeout:     gateway.TimeoutConfig{Thwm: 300 * time.Millisecond, Tmax: 500 * time.Millisecond},
			Breaker:     gateway.BreakerConfig{Kind: "sre"},
			Degrade: gateway.DegradeConfig{Fallback: degrade.Fallback{Kind: degrade.Static, Body: "later"},
				Auto: &degrade.AutoConfig{ErrorRate: 0.5, TimeoutRate: 0.5}},
		}},
	})
	if err != nil {
		b.Fatal(err)
	}
	return httptest.NewServer(g.Handler()), g
}

func client(conns int) (*http.Client, func()) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxIdleConns: conns, DisableCompression: true}
	return &http.Client{Transport: tr}, tr.CloseIdleConnections
}

func get(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// throughput runs saturationClients closed-loop clients for one phase.
func throughput(b *testing.B, u string) float64 {
	c, done := client(saturationClients)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), phase)
	defer cancel()
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range saturationClients {
		wg.Go(func() {
			n := 0
			for ctx.Err() == nil {
				if err := get(c, u); err != nil {
					b.Error(err)
					return
				}
				n++
			}
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// latencies sends latencyRequests one after another and returns them sorted.
func latencies(b *testing.B, u string) []time.Duration {
	c, done := client(1)
	defer done()
	out := make([]time.Duration, 0, latencyRequests)
	for range latencyRequests {
		t := time.Now()
		if err := get(c, u); err != nil {
			b.Fatal(err)
		}
		out = append(out, time.Since(t))
	}
	return out
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(p*float64(len(sorted)-1))]
}

func BenchmarkCompare(b *testing.B) {
	up := upstream()
	defer up.Close()
	bare := bareProxy(up.URL)
	defer bare.Close()
	gw, g := fullGateway(b, up.URL)
	defer gw.Close()
	defer g.Close()
	// Warm both paths (connections, pools).
	throughput(b, bare.URL+"/warm")
	throughput(b, gw.URL+"/warm")

	var bareRPS, gwRPS float64
	var bareLat, gwLat []time.Duration
	for i := range rounds {
		// Alternate which goes first so drift on a shared machine cancels.
		first, second := bare.URL, gw.URL
		if i%2 == 1 {
			first, second = second, first
		}
		for _, u := range []string{first, second} {
			rps := throughput(b, u+"/x")
			lat := latencies(b, u+"/x")
			if u == bare.URL {
				bareRPS += rps / rounds
				bareLat = append(bareLat, lat...)
			} else {
				gwRPS += rps / rounds
				gwLat = append(gwLat, lat...)
			}
		}
	}
	slices.Sort(bareLat)
	slices.Sort(gwLat)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(bareRPS, "bare_req/s")
	b.ReportMetric(gwRPS, "gateway_req/s")
	b.ReportMetric(gwRPS/bareRPS, "throughput_ratio")
	b.ReportMetric(us(pct(bareLat, 0.5)), "bare_p50_µs")
	b.ReportMetric(us(pct(gwLat, 0.5)), "gateway_p50_µs")
	b.ReportMetric(us(pct(bareLat, 0.99)), "bare_p99_µs")
	b.ReportMetric(us(pct(gwLat, 0.99)), "gateway_p99_µs")
	b.ReportMetric(us(pct(gwLat, 0.99)-pct(bareLat, 0.99)), "added_p99_µs")
}

// BenchmarkBare and BenchmarkGateway give the per-request cost and
// allocations of each proxy, client and upstream included.
func BenchmarkBare(b *testing.B) {
	up := upstream()
	defer up.Close()
	p := bareProxy(up.URL)
	defer p.Close()
	parallelGets(b, p.URL+"/x")
}

func BenchmarkGateway(b *testing.B) {
	up := upstream()
	defer up.Close()
	p, g := fullGateway(b, up.URL)
	defer p.Close()
	defer g.Close()
	parallelGets(b, p.URL+"/x")
}

func parallelGets(b *testing.B, u string) {
	c, done := client(64)
	defer done()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(c, u); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
