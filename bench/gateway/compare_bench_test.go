// Package gateway compares Mercury's gateway, with every middleware on and
// every request traced by the Mercury agent, against a bare
// httputil.ReverseProxy in front of the same loopback
// upstream, in one run. The machine is shared, so both sides are measured
// under the same noise: throughput in short alternating phases at
// saturation, latency with one client alternating request by request (so
// queueing does not hide the per-request cost).
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
	"syscall"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/gateway"
	"github.com/mercury-apm/mercury/gateway/cpu"
	"github.com/mercury-apm/mercury/gateway/degrade"
)

const (
	saturationClients = 32
	phase             = 500 * time.Millisecond // per throughput phase
	rounds            = 8                      // phases per side
	latencyRequests   = 8000                   // per side
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

// bufferPool is the gateway's own: it pools array pointers, so Put allocates nothing.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[32 << 10]byte); ok {
		return v[:]
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(x []byte) {
	if len(x) == 32<<10 {
		b.p.Put((*[32 << 10]byte)(x))
	}
}

// tracingAgent is an agent writing every span (sample rate 1) to a
// temporary spool, closed with the benchmark.
func tracingAgent(b *testing.B) *agent.Agent {
	a, err := agent.New(agent.Config{Service: "gateway", SpoolDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close(context.Background()) })
	return a
}

// reportAgent says how many spans reached the spool and how many the agent
// dropped, so a figure is not read as "traced" when the writer fell behind.
func reportAgent(b *testing.B, a *agent.Agent) {
	if err := a.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	st := a.Stats()
	b.ReportMetric(float64(st.SpansWritten), "spans_written")
	b.ReportMetric(float64(st.Dropped[agent.DropQueueFull]+st.Dropped[agent.DropDisk]), "spans_dropped")
}

// fullConfig enables every middleware on one route. The CPU source is fixed
// below BBR's threshold and the limits are far above the offered load, so
// every decision path runs and nothing is shed: the figure is pure overhead.
func fullConfig(up string, obs gateway.Observer) gateway.Config {
	return gateway.Config{
		Logger:      slog.New(slog.DiscardHandler),
		Observer:    obs,
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
	}
}

func newGateway(b *testing.B, cfg gateway.Config) *gateway.Gateway {
	g, err := gateway.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.Close)
	return g
}

// fullGateway serves fullConfig on a loopback listener.
func fullGateway(b *testing.B, up string, obs gateway.Observer) *httptest.Server {
	return httptest.NewServer(newGateway(b, fullConfig(up, obs)).Handler())
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

// cpuTime is the user+system CPU this process has used. Requests per CPU
// second do not depend on how much of the shared machine other tenants take.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// throughput runs saturationClients closed-loop clients for one phase and
// returns requests per wall second and per CPU second (client, proxy and
// upstream all run in this process).
func throughput(b *testing.B, u string) (perSec, perCPUSec float64) {
	c, done := client(saturationClients)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), phase)
	defer cancel()
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	start, cpu0 := time.Now(), cpuTime()
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
	return float64(total) / time.Since(start).Seconds(), float64(total) / (cpuTime() - cpu0).Seconds()
}

// latencies sends latencyRequests to each URL, alternating one by one, and
// returns both sets sorted.
func latencies(b *testing.B, bareURL, gwURL string) (bare, gw []time.Duration) {
	c, done := client(2)
	defer done()
	one := func(u string) time.Duration {
		t := time.Now()
		if err := get(c, u); err != nil {
			b.Fatal(err)
		}
		return time.Since(t)
	}
	for i := range latencyRequests {
		if i%2 == 0 { // alternate who goes first
			bare = append(bare, one(bareURL))
			gw = append(gw, one(gwURL))
		} else {
			gw = append(gw, one(gwURL))
			bare = append(bare, one(bareURL))
		}
	}
	slices.Sort(bare)
	slices.Sort(gw)
	return bare, gw
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(p*float64(len(sorted)-1))]
}

func BenchmarkCompare(b *testing.B) {
	up := upstream()
	defer up.Close()
	bare := bareProxy(up.URL)
	defer bare.Close()
	a := tracingAgent(b)
	gw := fullGateway(b, up.URL, gateway.NewAgentObserver(a))
	defer gw.Close()
	// Warm both paths (connections, pools).
	_, _ = throughput(b, bare.URL+"/warm")
	_, _ = throughput(b, gw.URL+"/warm")

	var bareRPS, gwRPS, bareCPU, gwCPU float64
	for i := range 2 * rounds {
		if i%4 == 0 || i%4 == 3 { // ABBA order cancels drift
			rps, cpu := throughput(b, bare.URL+"/x")
			bareRPS, bareCPU = bareRPS+rps/rounds, bareCPU+cpu/rounds
		} else {
			rps, cpu := throughput(b, gw.URL+"/x")
			gwRPS, gwCPU = gwRPS+rps/rounds, gwCPU+cpu/rounds
		}
	}
	bareLat, gwLat := latencies(b, bare.URL+"/x", gw.URL+"/x")
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(bareRPS, "bare_req/s")
	b.ReportMetric(gwRPS, "gateway_req/s")
	b.ReportMetric(gwRPS/bareRPS, "throughput_ratio")
	b.ReportMetric(bareCPU, "bare_req/cpu-s")
	b.ReportMetric(gwCPU, "gateway_req/cpu-s")
	b.ReportMetric(gwCPU/bareCPU, "cpu_throughput_ratio")
	b.ReportMetric(us(pct(bareLat, 0.5)), "bare_p50_µs")
	b.ReportMetric(us(pct(gwLat, 0.5)), "gateway_p50_µs")
	b.ReportMetric(us(pct(bareLat, 0.99)), "bare_p99_µs")
	b.ReportMetric(us(pct(gwLat, 0.99)), "gateway_p99_µs")
	b.ReportMetric(us(pct(gwLat, 0.99)-pct(bareLat, 0.99)), "added_p99_µs")
	reportAgent(b, a)
}

// BenchmarkBare, BenchmarkGateway and BenchmarkGatewayTraced give the
// per-request cost and allocations of each proxy, client and upstream
// included.
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
	p := fullGateway(b, up.URL, gateway.NopObserver{})
	defer p.Close()
	parallelGets(b, p.URL+"/x")
}

func BenchmarkGatewayTraced(b *testing.B) {
	up := upstream()
	defer up.Close()
	a := tracingAgent(b)
	p := fullGateway(b, up.URL, gateway.NewAgentObserver(a))
	defer p.Close()
	parallelGets(b, p.URL+"/x")
	reportAgent(b, a)
}

func parallelGets(b *testing.B, u string) {
	c, done := client(64)
	defer done()
	b.ReportAllocs()
	b.SetParallelism(8)
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(c, u); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
