// Package gateway compares Mercury's gateway, with every middleware on, with
// and without every request traced by the Mercury agent, against a bare
// httputil.ReverseProxy in front of the same loopback upstream, in one run. The machine is shared, so both sides are measured
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
	gwupstream "github.com/mercury-apm/mercury/gateway/upstream"
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

// fullConfig enables every middleware on one route, plus the request budget
// (and its header on every try), a bulkhead, outlier detection, the retry
// policy with its budget, fallback on failure and the dyed traffic's own
// limiter. The CPU source is fixed below BBR's threshold and the limits are
// far above the offered load, so every decision path runs and nothing is
// shed: the figure is pure overhead.
func fullConfig(up string, obs gateway.Observer) gateway.Config {
	return gateway.Config{
		Logger:      slog.New(slog.DiscardHandler),
		Observer:    obs,
		CPUSource:   &cpu.Fixed{},
		MaxInFlight: 100000,
		Routes: []gateway.RouteConfig{{
			Name: "bench", Prefix: "/", Service: "bench", Tier: 1,
			Local: gateway.UpstreamConfig{Instances: []string{up}, Balance: "least_loaded",
				Outlier: &gwupstream.Outlier{}},
			Remote:      &gateway.UpstreamConfig{Instances: []string{up}},
			Middlewares: []string{"tier", "bbr", "degrade", "ratelimit", "breaker", "dynamic_timeout", "retry"},
			RateLimit:   &gateway.RateLimitConfig{Limit: 1 << 40},
			Timeout:     gateway.TimeoutConfig{Thwm: 300 * time.Millisecond, Tmax: 500 * time.Millisecond},
			Breaker:     gateway.BreakerConfig{Kind: "sre"},
			Degrade: gateway.DegradeConfig{Fallback: degrade.Fallback{Kind: degrade.Static, Body: "later"},
				Auto: &degrade.AutoConfig{ErrorRate: 0.5, TimeoutRate: 0.5}, OnFailure: true},
			Budget:        time.Second,
			MaxConcurrent: 100000,
			Dye:           gateway.DyeConfig{RateLimit: &gateway.RateLimitConfig{Limit: 1 << 40}},
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

// latencies sends latencyRequests to each URL, one by one in rotating order, and returns the
// sets sorted.
func latencies(b *testing.B, urls ...string) [][]time.Duration {
	c, done := client(len(urls)) // one idle connection per proxy: no request pays a dial
	defer done()
	out := make([][]time.Duration, len(urls))
	for i := range latencyRequests {
		for j := range urls {
			k := (i + j) % len(urls) // rotate who goes first
			t := time.Now()
			if err := get(c, urls[k]); err != nil {
				b.Fatal(err)
			}
			out[k] = append(out[k], time.Since(t))
		}
	}
	for _, l := range out {
		slices.Sort(l)
	}
	return out
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(p*float64(len(sorted)-1))]
}

// BenchmarkCompare measures three proxies in one run: bare, the gateway with every middleware
// on, and the same gateway also tracing every request to its agent's spool. Ratios are against
// bare: "gateway_*" without tracing, "traced_*" with it.
func BenchmarkCompare(b *testing.B) {
	up := upstream()
	defer up.Close()
	bare := bareProxy(up.URL)
	defer bare.Close()
	gw := fullGateway(b, up.URL, gateway.NopObserver{})
	defer gw.Close()
	a := tracingAgent(b)
	traced := fullGateway(b, up.URL, gateway.NewAgentObserver(a))
	defer traced.Close()
	urls := []string{bare.URL + "/x", gw.URL + "/x", traced.URL + "/x"}
	names := []string{"bare", "gateway", "traced"}
	for _, u := range urls { // warm connections and pools
		_, _ = throughput(b, u+"/warm")
	}

	rps, cpu := make([]float64, len(urls)), make([]float64, len(urls))
	for i := range rounds {
		for j := range urls {
			k := j
			if i%2 == 1 { // ABC CBA ...: cancels drift
				k = len(urls) - 1 - j
			}
			r, c := throughput(b, urls[k])
			rps[k], cpu[k] = rps[k]+r/rounds, cpu[k]+c/rounds
		}
	}
	lat := latencies(b, urls...)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	for k, n := range names {
		b.ReportMetric(rps[k], n+"_req/s")
		b.ReportMetric(us(pct(lat[k], 0.5)), n+"_p50_µs")
		b.ReportMetric(us(pct(lat[k], 0.99)), n+"_p99_µs")
		if k > 0 {
			b.ReportMetric(rps[k]/rps[0], n+"_throughput_ratio")
			b.ReportMetric(cpu[k]/cpu[0], n+"_cpu_throughput_ratio")
			b.ReportMetric(us(pct(lat[k], 0.99)-pct(lat[0], 0.99)), n+"_added_p99_µs")
		}
	}
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
