package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
	for g.route("a").bbr.Stats().InFlight < 2 {
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

// Regression: the cache fallback kept one response per route, so Alice got
// Bob's profile and cookie, and a POST got a cached GET with a 200. Now it is
// keyed by method, URL and Vary, refuses per-user responses, and answers GET
// and HEAD only.
func TestCacheFallbackNeverLeaksAcrossUsers(t *testing.T) {
	var n atomic.Int64
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		user := strings.TrimPrefix(r.URL.Path, "/a/user/")
		switch user {
		case "bob": // logs Bob in
			w.Header().Set("Set-Cookie", "sid=bob-secret")
		case "dave":
			w.Header().Set("Cache-Control", "private, max-age=60")
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"user":%q,"v":%d}`, user, n.Add(1))
	})
	rc := route1("a", "/a/", 1, up.URL)
	rc.Degrade.Fallback = degrade.Fallback{Kind: degrade.Cache}
	g, _ := newGateway(t, Config{Routes: []RouteConfig{rc}})
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	send := func(method, path string, hdr ...string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	send("GET", "/a/user/alice")
	send("GET", "/a/user/bob")
	send("GET", "/a/user/carol", "Authorization", "Bearer carol-token")
	send("GET", "/a/user/dave")
	send("POST", "/a/user/erin")
	send("GET", "/a/user/me", "Cookie", "sid=frank") // personalised by cookie, no Vary: Cookie
	g.route("a").degrade.Apply(degrade.Setting{On: true})

	if code, body, h := send("GET", "/a/user/alice"); code != 200 || body != `{"user":"alice","v":1}` || h.Get("Set-Cookie") != "" {
		t.Fatalf("alice: %d %q %v", code, body, h)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/a/user/bob"},   // had Set-Cookie: never kept
		{"GET", "/a/user/carol"}, // asked with Authorization: never kept
		{"GET", "/a/user/dave"},  // Cache-Control: private
		{"GET", "/a/user/erin"},  // only a POST was seen
		{"GET", "/a/user/me"},    // asked with a Cookie, not public: never kept
		{"POST", "/a/user/alice"},
		{"PUT", "/a/user/alice"},
	} {
		code, body, h := send(c.method, c.path)
		if code != http.StatusServiceUnavailable || strings.Contains(body, "user") || h.Get("Set-Cookie") != "" {
			t.Errorf("%s %s: %d %q %v, want a plain 503", c.method, c.path, code, body, h)
		}
	}
	if code, body, _ := send("GET", "/a/user/alice", "Authorization", "Bearer bob-token"); code != 503 || body == `{"user":"alice","v":1}` {
		t.Fatalf("a request with Authorization was answered from the cache: %d %q", code, body)
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
