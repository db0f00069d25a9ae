package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/gateway/upstream"
	"github.com/mercury-apm/mercury/internal/clock"
)

// countingServer answers with h and counts its requests.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	return upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}), &n
}

func statusHandler(code int, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
	}
}

// The retry table decides: 501 and 505 answer the same everywhere and never
// fail over; a crash (500) is retried on another local instance before any
// failover; an overloaded 503 with Retry-After is not retried locally (the
// region is busy) but fails over.
func TestScenarioRetryTable(t *testing.T) {
	cases := []struct {
		name                   string
		bad                    http.HandlerFunc
		code                   int
		localRetry, failedOver bool
	}{
		{"501 is final", statusHandler(501), 501, false, false},
		{"505 is final", statusHandler(505), 505, false, false},
		{"404 is final", statusHandler(404), 404, false, false},
		{"500 is retried on the other instance", statusHandler(500), 200, true, false},
		{"overloaded 503 goes to the remote region", statusHandler(503, "Retry-After", "2"), 200, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad, badHits := countingServer(t, c.bad)
			// The "other" local instance is only ever reached by a local
			// retry: it fails the same way unless the table says crash.
			other, otherHits := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
				if c.localRetry {
					w.Write([]byte("other"))
					return
				}
				c.bad(w, r)
			})
			remote, remoteHits := countingServer(t, ok("remote"))
			rc := route1("r", "/r/", 1, bad.URL, other.URL)
			rc.Remote = &UpstreamConfig{Instances: []string{remote.URL}}
			clk := clock.NewFake(time.Hour)
			g, rec := newGateway(t, Config{Clock: clk, Routes: []RouteConfig{rc}})
			for badHits.Load() == 0 {
				clk.Advance(time.Second) // a fresh retry window round
				code, _ := do(g.Handler(), "GET", "/r/x", nil)
				o := rec.lastOutcome()
				if badHits.Load() == 0 {
					continue // the pick went to the other instance first
				}
				if code != c.code || o.RetriedLocally != c.localRetry || o.FailedOver != c.failedOver {
					t.Fatalf("status %d retried locally %v failed over %v, want %d %v %v",
						code, o.RetriedLocally, o.FailedOver, c.code, c.localRetry, c.failedOver)
				}
			}
			if !c.localRetry && otherHits.Load() > 1 || c.failedOver != (remoteHits.Load() > 0) {
				t.Fatalf("other instance %d hits, remote %d", otherHits.Load(), remoteHits.Load())
			}
		})
	}
}

// The retry budget caps retries as a share of active requests: with no
// floor and 1 %, a route with a handful of requests in flight retries none.
func TestRetryBudgetStopsRetries(t *testing.T) {
	local, _ := countingServer(t, statusHandler(500))
	remote, remoteHits := countingServer(t, ok("remote"))
	rc := route1("r", "/r/", 1, local.URL)
	rc.Remote = &UpstreamConfig{Instances: []string{remote.URL}}
	rc.Retry.BudgetPercent = 1
	g, _ := newGateway(t, Config{Routes: []RouteConfig{rc}})
	if code, _ := do(g.Handler(), "GET", "/r/x", nil); code != 500 || remoteHits.Load() != 0 {
		t.Fatalf("status %d, %d remote hits: the budget did not stop the failover", code, remoteHits.Load())
	}
	if v := counterValue(t, g, "mercury_gateway_failovers_total", "result", "retry_budget"); v != 1 {
		t.Fatalf("failovers{result=retry_budget} = %v", v)
	}
	if n := g.route("r").retry.budget.Retrying(); n != 0 {
		t.Fatalf("%d budget slots still held after the request ended", n)
	}
}

// The seed's rule: a timed-out local try is retried on another instance only
// while the route's timeout rate is below the bound; above it, timeouts go
// straight to the remote region.
func TestTimeoutRateBoundsLocalRetry(t *testing.T) {
	slow := newHangingUpstream(t)
	fast, _ := countingServer(t, ok("fast"))
	remote, remoteHits := countingServer(t, ok("remote"))
	rc := route1("r", "/r/", 1, slow.srv.URL, fast.URL)
	rc.Local.Timeout = 50 * time.Millisecond
	rc.Remote = &UpstreamConfig{Instances: []string{remote.URL}}
	rc.Budget = time.Minute
	clk := clock.NewFake(time.Hour)
	g, rec := newGateway(t, Config{Clock: clk, Routes: []RouteConfig{rc}})
	r := g.route("r")
	slowTry := func() Outcome {
		t.Helper()
		for before := len(slow.seen()); ; {
			code, body := do(g.Handler(), "GET", "/r/x", nil)
			if len(slow.seen()) == before {
				continue // went to the fast instance first
			}
			if code != 200 {
				t.Fatalf("status %d %q", code, body)
			}
			return rec.lastOutcome()
		}
	}
	for range 100 { // a healthy history: 1 timeout in 100 tries is below 10 %
		r.retry.timeouts.Observe(false)
	}
	if o := slowTry(); !o.RetriedLocally || o.FailedOver {
		t.Fatalf("below the bound: %+v", o)
	}
	for range 20 {
		r.retry.timeouts.Observe(true)
	}
	if o := slowTry(); o.RetriedLocally || !o.FailedOver || remoteHits.Load() != 1 {
		t.Fatalf("above the bound: %+v, %d remote hits", o, remoteHits.Load())
	}
}

// One bad instance of three: its failures are retried on the others, so the
// route neither throttles nor fails over; after 3 in a row it is ejected and
// gets no traffic until its ejection ends.
func TestScenarioOutlierEjection(t *testing.T) {
	bad, badHits := countingServer(t, statusHandler(500))
	good1, _ := countingServer(t, ok("1"))
	good2, _ := countingServer(t, ok("2"))
	remote, remoteHits := countingServer(t, ok("remote"))
	rc := route1("r", "/r/", 1, bad.URL, good1.URL, good2.URL)
	rc.Local.Outlier = &upstream.Outlier{Consecutive5xx: 3, BaseEjection: 30 * time.Second}
	rc.Remote = &UpstreamConfig{Instances: []string{remote.URL}}
	rc.Breaker = BreakerConfig{Kind: "classic", MaxFailures: 2}
	clk := clock.NewFake(time.Hour)
	g, rec := newGateway(t, Config{Clock: clk, Routes: []RouteConfig{rc}})
	for i := range 30 {
		if code, body := do(g.Handler(), "GET", "/r/x", nil); code != 200 {
			t.Fatalf("request %d: %d %q", i, code, body)
		}
	}
	if n := badHits.Load(); n != 3 {
		t.Fatalf("bad instance hit %d times, want 3 (then ejected)", n)
	}
	if remoteHits.Load() != 0 || g.route("r").breaker.State().String() != "closed" {
		t.Fatalf("%d failovers, breaker %v: one bad instance hurt the route", remoteHits.Load(), g.route("r").breaker.State())
	}
	want := fmt.Sprintf("[outlier r instance=%s ejected=true reason=consecutive_5xx]", bad.URL)
	if ev := rec.eventsOf(EventOutlier); fmt.Sprint(ev) != want {
		t.Fatalf("events %v", ev)
	}
	clk.Advance(30 * time.Second)
	g.route("r").local.Sweep()
	for range 3 {
		do(g.Handler(), "GET", "/r/x", nil)
	}
	if badHits.Load() == 3 {
		t.Fatalf("bad instance not back after its ejection: %d hits", badHits.Load())
	}
}
