package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/gateway/degrade"
	"github.com/mercury-apm/mercury/internal/clock"
)

// A route's bulkhead refuses what is beyond its concurrency while another
// route keeps being served.
func TestScenarioBulkhead(t *testing.T) {
	arrived, release := make(chan struct{}, 8), make(chan struct{})
	slow := upstreamServer(t, func(w http.ResponseWriter, _ *http.Request) {
		arrived <- struct{}{}
		<-release
	})
	fast := upstreamServer(t, ok("fast"))
	rc := route1("slow", "/slow/", 2, slow.URL)
	rc.MaxConcurrent = 2
	g, rec := newGateway(t, Config{Routes: []RouteConfig{rc, route1("fast", "/fast/", 2, fast.URL)}})
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := srv.Client().Get(srv.URL + "/slow/x")
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	<-arrived
	<-arrived
	if code, _ := do(g.Handler(), "GET", "/slow/x", nil); code != 503 || rec.lastOutcome().ShedBy != shedBulkhead {
		t.Fatalf("third concurrent request: %d %+v", code, rec.lastOutcome())
	}
	if code, body := do(g.Handler(), "GET", "/fast/x", nil); code != 200 || body != "fast" {
		t.Fatalf("the other route suffered: %d %q", code, body)
	}
	close(release)
	wg.Wait()
	if code, _ := do(g.Handler(), "GET", "/slow/x", nil); code != 200 {
		t.Fatalf("after the slow requests ended: %d", code)
	}
}

// Dyed load-test traffic has its own limiter, breaker and metrics, and one
// switch stops all of it; real users notice none of it.
func TestScenarioDyedTrafficIsolated(t *testing.T) {
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(DyeHeader) != "" && r.URL.Path == "/a/broken" {
			w.WriteHeader(500) // the load test hits a code path that fails
			return
		}
		w.Write([]byte("ok"))
	})
	rc := route1("a", "/a/", 1, up.URL)
	rc.RateLimit = &RateLimitConfig{Limit: 100, Window: time.Second}
	rc.Dye.RateLimit = &RateLimitConfig{Limit: 5, Window: time.Second}
	rc.Breaker = BreakerConfig{Kind: "classic", MaxFailures: 3, OpenFor: time.Minute}
	clk := clock.NewFake(time.Hour)
	g, rec := newGateway(t, Config{Clock: clk, AdminToken: "s3cret", Routes: []RouteConfig{rc}})
	h := g.Handler()
	dyed := func(path string) int {
		code, _ := do(h, "GET", path, nil, DyeHeader, "1")
		return code
	}
	real := func() int {
		code, _ := do(h, "GET", "/a/x", nil)
		return code
	}
	// The dyed limit is 5 a second; real traffic's 100 is untouched.
	for i := range 5 {
		if c := dyed("/a/x"); c != 200 {
			t.Fatalf("dyed request %d: %d", i, c)
		}
	}
	if c := dyed("/a/x"); c != http.StatusTooManyRequests {
		t.Fatalf("6th dyed request: %d, want 429", c)
	}
	for i := range 20 {
		if c := real(); c != 200 {
			t.Fatalf("real request %d under a dyed limit: %d", i, c)
		}
	}
	// The load test's failures open its own breaker, not the real one.
	clk.Advance(time.Second)
	for range 3 {
		dyed("/a/broken")
	}
	if c := dyed("/a/x"); c != 503 || rec.lastOutcome().ShedBy != shedBreaker {
		t.Fatalf("dyed breaker not open: %d %+v", c, rec.lastOutcome())
	}
	if c := real(); c != 200 || g.route("a").breaker.State().String() != "closed" {
		t.Fatalf("real traffic: %d, breaker %v", c, g.route("a").breaker.State())
	}
	if ev := rec.eventsOf(EventBreaker); len(ev) != 1 || !strings.Contains(ev[0], "dyed=true") {
		t.Fatalf("breaker events %v", ev)
	}
	// Own metrics: 21 real requests, all 2xx; the dyed ones counted apart.
	if v := counterValue(t, g, "mercury_gateway_requests_total", "code", "2xx"); v != 21 {
		t.Fatalf("real 2xx = %v, want 21", v)
	}
	if v := counterValue(t, g, "mercury_gateway_dyed_requests_total", "code", "5xx"); v != 4 {
		t.Fatalf("dyed 5xx = %v, want 4", v)
	}
	if v := counterValue(t, g, "mercury_gateway_errors_total", "route", "a"); v != 0 {
		t.Fatalf("real errors = %v", v)
	}
	// One switch stops every dyed request.
	admin := g.AdminHandler()
	if code, body := do(admin, "PUT", "/admin/dye", strings.NewReader(`{"enabled":false}`), "Authorization", "Bearer s3cret"); code != 204 {
		t.Fatalf("dye switch: %d %s", code, body)
	}
	if c := dyed("/a/x"); c != 503 || rec.lastOutcome().ShedBy != shedDye {
		t.Fatalf("dyed request with the switch off: %d %+v", c, rec.lastOutcome())
	}
	if c := real(); c != 200 {
		t.Fatalf("real request with the dye switch off: %d", c)
	}
	if code, body := do(admin, "GET", "/admin/dye", nil); code != 200 || !strings.Contains(body, `"enabled": false`) {
		t.Fatalf("GET /admin/dye: %d %s", code, body)
	}
	if code, _ := do(admin, "PUT", "/admin/dye", strings.NewReader(`{"on":true}`), "Authorization", "Bearer s3cret"); code != 400 {
		t.Fatalf("unknown field accepted: %d", code)
	}
}

// degrade.on_failure: one failed request gets the fallback while the switch
// is off — the kept response for its URL, or 503 for a URL never seen.
func TestFallbackOnSingleFailure(t *testing.T) {
	var mu sync.Mutex
	failing := false
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := failing
		mu.Unlock()
		if f {
			w.WriteHeader(502)
			return
		}
		w.Write([]byte("profile of " + strings.TrimPrefix(r.URL.Path, "/u/")))
	})
	rc := route1("u", "/u/", 1, up.URL)
	rc.Degrade = DegradeConfig{Fallback: degrade.Fallback{Kind: degrade.Cache}, OnFailure: true}
	dead := route1("dead", "/dead/", 1, "http://127.0.0.1:1")
	dead.Degrade = DegradeConfig{Fallback: degrade.Fallback{Kind: degrade.Static, Body: "later"}, OnFailure: true}
	g, rec := newGateway(t, Config{Routes: []RouteConfig{rc, dead}})
	h := g.Handler()
	do(h, "GET", "/u/alice", nil)
	mu.Lock()
	failing = true
	mu.Unlock()
	if code, body := do(h, "GET", "/u/alice", nil); code != 200 || body != "profile of alice" || !rec.lastOutcome().Degraded {
		t.Fatalf("alice during the failure: %d %q %+v", code, body, rec.lastOutcome())
	}
	if code, body := do(h, "GET", "/u/bob", nil); code != 503 || strings.Contains(body, "alice") {
		t.Fatalf("bob during the failure: %d %q", code, body)
	}
	if code, body := do(h, "GET", "/dead/x", nil); code != 200 || body != "later" {
		t.Fatalf("connection refused: %d %q", code, body)
	}
	if g.route("u").degrade.Status().On {
		t.Fatal("the switch turned on")
	}
}
