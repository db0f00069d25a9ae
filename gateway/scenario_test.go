package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

// (a) The local region returns 500s: requests fail over to the remote region
// and succeed, and the retry window grows round by round. Then the remote
// region fails too: the window falls back to 1 and failover almost stops.
func TestScenarioFailoverWindow(t *testing.T) {
	var remoteOK atomic.Bool
	remoteOK.Store(true)
	var remoteHits atomic.Int64
	local := upstreamServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	remote := upstreamServer(t, func(w http.ResponseWriter, _ *http.Request) {
		remoteHits.Add(1)
		if !remoteOK.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "from remote")
	})
	rc := route1("songs", "/song/", 1, local.URL)
	rc.Remote = &UpstreamConfig{Region: "sh", Instances: []string{remote.URL}}
	rc.Middlewares = []string{MWRetry}
	clk := clock.NewFake(time.Hour)
	g, rec := newGateway(t, Config{Clock: clk, Routes: []RouteConfig{rc}})
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	client := srv.Client()

	// One probe round: 300 requests, then the round ends.
	round := func() (succeeded int, window int64) {
		window = g.route("songs").window.Stats().Size
		for range 300 {
			resp, err := client.Get(srv.URL + "/song/1")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				succeeded++
			}
		}
		clk.Advance(time.Second)
		return succeeded, window
	}
	// 1 % of 300 local requests is 3: the window grows 1 → 2 → 4 → 7 → 10 …
	var sizes []int64
	for range 5 {
		ok, w := round()
		if int64(ok) != w {
			t.Fatalf("window %d but %d requests succeeded remotely", w, ok)
		}
		sizes = append(sizes, w)
	}
	if fmt.Sprint(sizes) != "[1 2 4 7 10]" {
		t.Fatalf("window sizes %v", sizes)
	}
	if o := rec.lastOutcome(); o.Status != 500 || o.FailedOver {
		t.Fatalf("beyond the window the local 500 goes to the client: %+v", o)
	}

	// The remote region fails too: 13 → 6 → 3 → 1, then one probe per round.
	remoteOK.Store(false)
	sizes = sizes[:0]
	for range 5 {
		_, w := round()
		sizes = append(sizes, w)
	}
	if fmt.Sprint(sizes) != "[13 6 3 1 1]" {
		t.Fatalf("window sizes while remote fails %v", sizes)
	}
	before := remoteHits.Load()
	round()
	if n := remoteHits.Load() - before; n != 1 {
		t.Fatalf("%d failovers in a round of 300 with the remote down, want 1", n)
	}
	if ev := rec.eventsOf(EventRetryWindow); len(ev) != 8 {
		t.Fatalf("retry window events %v", ev)
	}
}

// (b) Three times more concurrent demand than capacity: tier 1 keeps ≥ 99 %
// success while tiers 4, 3, 2 are shed in that order.
func TestScenarioTieredShedding(t *testing.T) {
	up := upstreamServer(t, func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(10 * time.Millisecond)
		io.WriteString(w, "ok")
	})
	var routes []RouteConfig
	for tier := 1; tier <= 4; tier++ {
		rc := route1(fmt.Sprintf("t%d", tier), fmt.Sprintf("/t%d/", tier), tier, up.URL)
		rc.Middlewares = []string{MWTier}
		routes = append(routes, rc)
	}
	// Capacity 40 in flight. Tier 1 peaks at 10 in flight, so tier 2 is
	// shed from 60 % load on: tier 1's headroom is reserved.
	g, _ := newGateway(t, Config{MaxInFlight: 40, TierThresholds: [4]float64{1, 0.6, 0.5, 0.4}, Routes: routes})
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 200}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	// Demand: 120 closed-loop clients = 3 × capacity.
	clients := map[int]int{1: 10, 2: 30, 3: 40, 4: 40}
	var okN, total [5]atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for tier, n := range clients {
		for range n {
			wg.Go(func() {
				for ctx.Err() == nil {
					resp, err := client.Get(fmt.Sprintf("%s/t%d/x", srv.URL, tier))
					if err != nil {
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					total[tier].Add(1)
					if resp.StatusCode == 200 {
						okN[tier].Add(1)
					} else {
						time.Sleep(5 * time.Millisecond) // a shed client backs off a little
					}
				}
			})
		}
	}
	wg.Wait()
	var rate [5]float64
	for tier := 1; tier <= 4; tier++ {
		rate[tier] = float64(okN[tier].Load()) / float64(total[tier].Load())
		t.Logf("tier %d: %d/%d ok (%.1f %%)", tier, okN[tier].Load(), total[tier].Load(), 100*rate[tier])
	}
	if rate[1] < 0.99 {
		t.Fatalf("tier 1 success %.3f < 0.99", rate[1])
	}
	if !(rate[1] > rate[2] && rate[2] > rate[3] && rate[3] > rate[4]) {
		t.Fatalf("tiers not shed in order: %v", rate[1:])
	}
}

// (c) A latency spike: the dynamic timeout cuts slow requests, the classic
// breaker opens on the timeouts, the transitions are reported, and once the
// upstream is fast again the breaker probes and closes.
func TestScenarioLatencySpikeBreaker(t *testing.T) {
	var slow atomic.Bool
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "ok")
	})
	rc := route1("search", "/search/", 2, up.URL)
	rc.Middlewares = []string{MWBreaker, MWDynamicTimeout}
	// Generous bounds: the machine running the tests may be busy, and a
	// fast request must not look slow.
	rc.Timeout = TimeoutConfig{Thwm: 100 * time.Millisecond, Tmax: 200 * time.Millisecond, Tavg: 20 * time.Millisecond, N: 5}
	rc.Breaker = BreakerConfig{Kind: "classic", FailureRatio: 0.3, MinRequests: 10, OpenFor: 5 * time.Second, HalfOpenQuota: 3, CloseRatio: 1}
	clk := clock.NewFake(time.Hour)
	g, rec := newGateway(t, Config{Clock: clk, Routes: []RouteConfig{rc}})
	h := g.Handler()
	r := g.route("search")

	for range 20 {
		if code, _ := do(h, "GET", "/search/q", nil); code != 200 {
			t.Fatalf("healthy phase: %d", code)
		}
	}
	if r.dyn.Timeout() <= 100*time.Millisecond {
		t.Fatalf("fast upstream should stretch the timeout beyond Thwm, got %v", r.dyn.Timeout())
	}
	slow.Store(true)
	var codes []int
	for range 15 {
		code, _ := do(h, "GET", "/search/q", nil)
		codes = append(codes, code)
	}
	if r.breaker.State().String() != "open" {
		t.Fatalf("breaker %v after spike; codes %v", r.breaker.State(), codes)
	}
	if r.dyn.Timeout() != 100*time.Millisecond {
		t.Fatalf("slow upstream should pull the timeout to Thwm, got %v", r.dyn.Timeout())
	}
	if !strings.Contains(fmt.Sprint(codes), "504") || codes[len(codes)-1] != 503 {
		t.Fatalf("want timeouts then fast 503s from the open breaker, got %v", codes)
	}
	// While open, requests fail fast without touching the upstream.
	start := time.Now()
	do(h, "GET", "/search/q", nil)
	if d := time.Since(start); d > 90*time.Millisecond {
		t.Fatalf("open breaker took %v", d)
	}
	slow.Store(false)
	clk.Advance(5 * time.Second)
	for range 3 {
		if code, _ := do(h, "GET", "/search/q", nil); code != 200 {
			t.Fatalf("probe: %d", code)
		}
	}
	if r.breaker.State().String() != "closed" {
		t.Fatalf("breaker %v after good probes", r.breaker.State())
	}
	want := []string{
		"breaker_state search from=closed to=open",
		"breaker_state search from=open to=half-open",
		"breaker_state search from=half-open to=closed",
	}
	if got := rec.eventsOf(EventBreaker); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v\nwant %v", got, want)
	}
}

type panickyTransport struct{ http.RoundTripper }

func (p panickyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.URL.Path, "/boom") {
		explode(r.URL.Path)
	}
	return p.RoundTripper.RoundTrip(r)
}

func explode(path string) { panic("exploded on " + path) }

// (d) A panic while serving: the client gets a 502, the server keeps serving,
// and the panic reaches Sentry (a local endpoint speaking its protocol) as an
// envelope with the stack trace.
func TestScenarioPanicReachesSentry(t *testing.T) {
	envelopes := make(chan string, 4)
	sentrySrv := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.HasSuffix(r.URL.Path, "/envelope/") {
			envelopes <- string(b)
		}
		w.Write([]byte(`{"id":"0"}`))
	})
	t.Setenv("SENTRY_DSN", "http://publickey@"+strings.TrimPrefix(sentrySrv.URL, "http://")+"/42")
	up := upstreamServer(t, ok("fine"))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	g, rec := newGateway(t, Config{Transport: panickyTransport{tr},
		Routes: []RouteConfig{route1("boom", "/boom/", 3, up.URL), route1("fine", "/fine/", 1, up.URL)}})
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL + "/boom/now")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("panic answered %d, want 502", resp.StatusCode)
	}
	if o := rec.lastOutcome(); o.Status != http.StatusBadGateway { // recorded while the panic unwound
		t.Fatalf("panicked request reported status %d, want 502", o.Status)
	}
	resp, err = srv.Client().Get(srv.URL + "/fine/x")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("server stopped serving after a panic: %v %v", err, resp)
	}
	resp.Body.Close()
	g.Close() // flushes the Sentry transport
	select {
	case env := <-envelopes:
		for _, want := range []string{`"type":"event"`, "exploded on /boom/now", `"stacktrace"`, `"function":"explode"`, `"route":"boom"`} {
			if !strings.Contains(env, want) {
				t.Errorf("envelope lacks %s:\n%.2000s", want, env)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no envelope reached the Sentry endpoint")
	}
	if ev := rec.eventsOf(EventPanic); len(ev) != 1 {
		t.Fatalf("panic events %v", ev)
	}
}
