package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/deadline"
)

// hangingUpstream answers only when the gateway gives up on it, and records
// the budget each request was told it had.
type hangingUpstream struct {
	mu      sync.Mutex
	budgets []int
	srv     *httptest.Server
}

func newHangingUpstream(t *testing.T) *hangingUpstream {
	u := &hangingUpstream{}
	u.srv = upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.Header.Get(deadline.Header))
		if err != nil {
			ms = -1
		}
		u.mu.Lock()
		u.budgets = append(u.budgets, ms)
		u.mu.Unlock()
		<-r.Context().Done()
	})
	return u
}

func (u *hangingUpstream) seen() []int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]int(nil), u.budgets...)
}

// Local and remote tries used to add up (300 + 300 ms, 550 ms seen in
// production). Now one budget covers both: with a 200 ms local try, a 300 ms
// remote one and a 350 ms budget, the remote try gets the ≤ 150 ms the local
// one left, and each upstream is told how much that is.
func TestScenarioOneBudgetAcrossTries(t *testing.T) {
	local, remote := newHangingUpstream(t), newHangingUpstream(t)
	rc := route1("up", "/up/", 1, local.srv.URL)
	rc.Local.Timeout = 200 * time.Millisecond
	rc.Remote = &UpstreamConfig{Instances: []string{remote.srv.URL}, Timeout: 300 * time.Millisecond}
	rc.Budget = 350 * time.Millisecond
	g, rec := newGateway(t, Config{Routes: []RouteConfig{rc}})
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()

	start := time.Now()
	resp, err := srv.Client().Get(srv.URL + "/up/photo")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	if resp.StatusCode != http.StatusGatewayTimeout || !rec.lastOutcome().FailedOver {
		t.Fatalf("status %d, outcome %+v", resp.StatusCode, rec.lastOutcome())
	}
	if l := local.seen(); len(l) != 1 || l[0] != 200 {
		t.Fatalf("local try told %v ms, want its own 200 ms timeout", l)
	}
	if r := remote.seen(); len(r) != 1 || r[0] < 1 || r[0] > 150 {
		t.Fatalf("remote try told %v ms, want what the 350 ms budget left (≤ 150)", r)
	}
	if elapsed >= 500*time.Millisecond {
		t.Fatalf("request took %v: the tries' timeouts added up", elapsed)
	}
}

// Without a configured budget, a request takes no longer than its longest
// single try: a local timeout leaves nothing for a failover.
func TestDefaultBudgetIsTheLongestTry(t *testing.T) {
	local, remote := newHangingUpstream(t), newHangingUpstream(t)
	rc := route1("up", "/up/", 1, local.srv.URL)
	rc.Local.Timeout = 200 * time.Millisecond
	rc.Remote = &UpstreamConfig{Instances: []string{remote.srv.URL}, Timeout: 200 * time.Millisecond}
	g, _ := newGateway(t, Config{Routes: []RouteConfig{rc}})
	if code, _ := do(g.Handler(), "GET", "/up/x", nil); code != http.StatusGatewayTimeout {
		t.Fatalf("status %d", code)
	}
	if n := len(remote.seen()); n != 0 {
		t.Fatalf("%d remote tries after the budget was spent", n)
	}
	if v := counterValue(t, g, "mercury_gateway_failovers_total", "result", "no_budget"); v != 1 {
		t.Fatalf("failovers{result=no_budget} = %v", v)
	}
}

// A caller's own budget header caps the route's; 0 means the caller has
// given up, so no upstream is bothered; a malformed one is ignored.
func TestCallerBudgetHeader(t *testing.T) {
	var mu sync.Mutex
	var told []string
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		told = append(told, r.Header.Get(deadline.Header))
		mu.Unlock()
	})
	rc := route1("up", "/up/", 1, up.URL)
	rc.Local.Timeout = time.Minute
	g, _ := newGateway(t, Config{Routes: []RouteConfig{rc}})
	h := g.Handler()
	for _, c := range []struct {
		header string
		code   int
		check  func(ms int) bool
	}{
		{"50", 200, func(ms int) bool { return ms >= 1 && ms <= 50 }},
		{"soon", 200, func(ms int) bool { return ms > 59000 }}, // ignored: the route's minute
		{"0", http.StatusGatewayTimeout, nil},
	} {
		mu.Lock()
		told = nil
		mu.Unlock()
		code, _ := do(h, "GET", "/up/x", nil, deadline.Header, c.header)
		mu.Lock()
		got := told
		mu.Unlock()
		if code != c.code {
			t.Fatalf("header %q: status %d, want %d", c.header, code, c.code)
		}
		if c.check == nil {
			if len(got) != 0 {
				t.Fatalf("header %q reached the upstream: %v", c.header, got)
			}
			continue
		}
		ms, _ := strconv.Atoi(got[0])
		if len(got) != 1 || !c.check(ms) {
			t.Fatalf("header %q: upstream told %v", c.header, got)
		}
	}
}
