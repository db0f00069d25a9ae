package gateway

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/gateway/cpu"
	"github.com/mercury-apm/mercury/gateway/degrade"
	"github.com/mercury-apm/mercury/internal/clock"
)

func TestRateLimitedRequestsFailOver(t *testing.T) {
	local := upstreamServer(t, ok("local"))
	remote := upstreamServer(t, ok("remote"))
	rc := route1("songs", "/song/", 1, local.URL)
	rc.RateLimit = &RateLimitConfig{Limit: 2, Window: time.Second}
	clk := clock.NewFake(time.Hour)
	noRemote := rc
	noRemote.Name, noRemote.Prefix = "plain", "/plain/"
	rc.Remote = &UpstreamConfig{Instances: []string{remote.URL}}
	g, rec := newGateway(t, Config{Clock: clk, Routes: []RouteConfig{rc, noRemote}})
	h := g.Handler()
	var bodies []string
	for range 4 {
		_, b := do(h, "GET", "/song/1", nil)
		bodies = append(bodies, b)
	}
	// Two local, one failover (window 1), then the local limit shows: 429.
	if fmt.Sprint(bodies[:3]) != "[local local remote]" {
		t.Fatalf("bodies %q", bodies)
	}
	if o := rec.lastOutcome(); o.Status != http.StatusTooManyRequests || o.ShedBy != "ratelimit" || o.FailedOver {
		t.Fatalf("4th outcome %+v", o)
	}
	rec.mu.Lock()
	third := rec.outcomes[2]
	rec.mu.Unlock()
	if !third.FailedOver || third.Retried || third.ShedBy != "ratelimit" || third.Upstream != UpstreamRemote {
		t.Fatalf("3rd outcome %+v", third)
	}
	for range 3 {
		do(h, "GET", "/plain/1", nil)
	}
	// One start event per shedding episode, one stop after a quiet second.
	clk.Advance(2 * time.Second)
	do(h, "GET", "/song/1", nil)
	want := "[limiter songs limiter=ratelimit shedding=true limiter plain limiter=ratelimit shedding=true limiter songs limiter=ratelimit shedding=false]"
	if ev := rec.eventsOf(EventLimiter); fmt.Sprint(ev) != want {
		t.Fatalf("events %v\nwant %v", ev, want)
	}
}

func TestBBRShedsInGateway(t *testing.T) {
	release := make(chan struct{})
	up := upstreamServer(t, func(w http.ResponseWriter, _ *http.Request) { <-release })
	rc := route1("a", "/a/", 1, up.URL)
	rc.Middlewares = []string{MWBBR}
	src := &cpu.Fixed{}
	src.Set(0.95)
	clk := clock.NewFake(time.Hour)
	g, rec := newGateway(t, Config{Clock: clk, CPUSource: src, Routes: []RouteConfig{rc}})
	h := g.Handler()
	// With no history BBR assumes 1 in flight is sustainable: the first two
	// get through, the third is shed while the CPU is hot.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { do(h, "GET", "/a/x", nil) })
	}
	for g.byName["a"].bbr.Stats().InFlight < 2 {
		time.Sleep(time.Millisecond)
	}
	if code, _ := do(h, "GET", "/a/x", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("hot CPU, 2 in flight: %d", code)
	}
	if o := rec.lastOutcome(); o.ShedBy != "bbr" {
		t.Fatalf("outcome %+v", o)
	}
	close(release)
	wg.Wait()
	src.Set(0.1)
	clk.Advance(2 * time.Second)
	if code, _ := do(h, "GET", "/a/x", nil); code != 200 {
		t.Fatalf("cool CPU: %d", code)
	}
	want := "[limiter a limiter=bbr shedding=true limiter a limiter=bbr shedding=false]"
	if ev := rec.eventsOf(EventLimiter); fmt.Sprint(ev) != want {
		t.Fatalf("events %v", ev)
	}
}

func TestCacheFallbackServesLastGoodResponse(t *testing.T) {
	var n atomic.Int64
	up := upstreamServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"v":%d}`, n.Add(1))
	})
	rc := route1("a", "/a/", 1, up.URL)
	rc.Degrade.Fallback = degrade.Fallback{Kind: degrade.Cache}
	g, _ := newGateway(t, Config{Routes: []RouteConfig{rc}})
	h := g.Handler()
	do(h, "GET", "/a/1", nil)
	do(h, "GET", "/a/1", nil)
	g.byName["a"].degrade.Apply(degrade.Setting{On: true})
	code, body := do(h, "GET", "/a/1", nil)
	if code != 200 || body != `{"v":2}` {
		t.Fatalf("cache fallback: %d %q", code, body)
	}
}

func TestAutoDegradeThroughGateway(t *testing.T) {
	up := upstreamServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) })
	rc := route1("a", "/a/", 3, up.URL)
	rc.Middlewares = []string{MWDegrade}
	rc.Degrade = DegradeConfig{Fallback: degrade.Fallback{Kind: degrade.Static, Body: "sorry"},
		Auto: &degrade.AutoConfig{ErrorRate: 0.5, For: 2 * time.Second, MinRequests: 5}}
	clk := clock.NewFake(time.Hour)
	g, rec := newGateway(t, Config{Clock: clk, Routes: []RouteConfig{rc}})
	h := g.Handler()
	for range 3 {
		for range 5 {
			do(h, "GET", "/a/1", nil)
		}
		clk.Advance(time.Second)
	}
	do(h, "GET", "/a/1", nil) // judged at the start of the next second
	if code, body := do(h, "GET", "/a/1", nil); code != 200 || body != "sorry" {
		t.Fatalf("not auto-degraded: %d %q", code, body)
	}
	if ev := rec.eventsOf(EventDegrade); len(ev) != 1 || ev[0] != "degrade a on=true reason=auto" {
		t.Fatalf("events %v", ev)
	}
}
