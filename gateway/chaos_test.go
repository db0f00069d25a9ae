package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

func chaosGateway(t *testing.T) (*Gateway, *atomic.Int64, *recorder, *clock.Fake) {
	t.Helper()
	var hits atomic.Int64
	up := upstreamServer(t, func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Write([]byte("ok"))
	})
	songs := route1("songs", "/song/", 1, up.URL)
	songs.Local.Timeout = time.Second
	clk := clock.NewFake(time.Hour)
	g, rec := newGateway(t, Config{Clock: clk, AdminToken: token,
		Routes: []RouteConfig{songs, route1("comments", "/comment/", 2, up.URL)}})
	return g, &hits, rec, clk
}

func chaosStatus(t *testing.T, g *Gateway) ChaosStatus {
	t.Helper()
	code, body := do(g.AdminHandler(), "GET", "/admin/chaos", nil)
	var st ChaosStatus
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
		t.Fatalf("GET /admin/chaos: %d %s %v", code, body, err)
	}
	return st
}

// The experiment aborts tier-1 requests; once 10 real tier-1 requests show
// success below 90 %, the steady-state guard ends it by itself and traffic
// is whole again.
func TestScenarioChaosAbortsItself(t *testing.T) {
	g, hits, rec, _ := chaosGateway(t)
	exp := `{"route":"songs","abort_status":500,"percent":100,"guard":{"min_tier1_success":0.9,"min_requests":10}}`
	if code, body := admin(t, g, "PUT", "/admin/chaos", exp); code != 200 || !strings.Contains(body, `"running": true`) {
		t.Fatalf("start: %d %s", code, body)
	}
	if code, _ := admin(t, g, "PUT", "/admin/chaos", exp); code != http.StatusConflict {
		t.Fatalf("second experiment: %d", code)
	}
	failed := 0
	for range 30 {
		if code, _ := do(g.Handler(), "GET", "/song/1", nil); code == 500 {
			failed++
		}
	}
	if failed != 10 || hits.Load() != 20 {
		t.Fatalf("%d requests failed and %d reached the upstream; want the guard to stop at 10 and 20", failed, hits.Load())
	}
	st := chaosStatus(t, g)
	if st.Running || st.Aborted != 10 || !strings.HasPrefix(st.EndReason, "steady state broken: tier-1 success 0.000 < 0.900 over 10 requests") {
		t.Fatalf("status %+v", st)
	}
	ev := rec.eventsOf(EventChaos)
	if len(ev) != 2 || !strings.Contains(ev[0], "state=started") || !strings.Contains(ev[1], "state=ended") || !strings.Contains(ev[1], "reason=steady state broken") {
		t.Fatalf("events %v", ev)
	}
}

// Dyed-only experiments leave real traffic alone; a tier-2 route's failures
// do not count against the tier-1 steady state; a delay that outlasts the
// try times out without reaching the upstream; expiry and DELETE end it.
func TestChaosTargeting(t *testing.T) {
	g, hits, _, clk := chaosGateway(t)
	start := func(exp string) {
		t.Helper()
		if code, body := admin(t, g, "PUT", "/admin/chaos", exp); code != 200 {
			t.Fatalf("start %s: %d %s", exp, code, body)
		}
	}
	start(`{"abort_status":503,"percent":100,"dyed_only":true,"seconds":60}`)
	if code, _ := do(g.Handler(), "GET", "/song/1", nil); code != 200 {
		t.Fatalf("real request under a dyed-only experiment: %d", code)
	}
	if code, body := do(g.Handler(), "GET", "/song/1", nil, DyeHeader, "1"); code != 503 || !strings.Contains(body, "chaos") {
		t.Fatalf("dyed request: %d %q", code, body)
	}
	clk.Advance(time.Minute)
	if code, _ := do(g.Handler(), "GET", "/song/1", nil, DyeHeader, "1"); code != 200 {
		t.Fatalf("dyed request after expiry: %d", code)
	}
	if st := chaosStatus(t, g); st.Running || st.EndReason != "expired" {
		t.Fatalf("status %+v", st)
	}

	start(`{"route":"comments","abort_status":500,"percent":100,"guard":{"min_requests":5}}`)
	for range 10 {
		do(g.Handler(), "GET", "/comment/1", nil)
	}
	if !chaosStatus(t, g).Running {
		t.Fatal("tier-2 failures broke the tier-1 steady state")
	}
	if code, _ := admin(t, g, "DELETE", "/admin/chaos", ""); code != 200 || chaosStatus(t, g).EndReason != "stopped" {
		t.Fatalf("DELETE: %d", code)
	}
	if code, _ := admin(t, g, "DELETE", "/admin/chaos", ""); code != http.StatusConflict {
		t.Fatalf("second DELETE: %d", code)
	}

	// A 50 ms delay inside a 1 s try reaches the upstream late; one longer
	// than the try times out without reaching it.
	before := hits.Load()
	start(`{"route":"songs","delay_ms":50,"percent":100}`)
	t0 := time.Now()
	if code, _ := do(g.Handler(), "GET", "/song/1", nil); code != 200 || time.Since(t0) < 50*time.Millisecond || hits.Load() != before+1 {
		t.Fatalf("delayed request: %d after %v", code, time.Since(t0))
	}
	admin(t, g, "DELETE", "/admin/chaos", "")
	start(`{"route":"songs","delay_ms":5000,"percent":100}`)
	if code, _ := do(g.Handler(), "GET", "/song/1", nil, "X-Mercury-Budget-Ms", "30"); code != http.StatusGatewayTimeout || hits.Load() != before+1 {
		t.Fatalf("delay beyond the try: %d, %d upstream hits", code, hits.Load()-before)
	}
}

func TestChaosHostileInput(t *testing.T) {
	g, _, _, _ := chaosGateway(t)
	for _, body := range []string{
		`{"route":"nope","abort_status":500,"percent":100}`,
		`{"abort_status":200,"percent":100}`,
		`{"percent":100}`,
		`{"abort_status":500,"percent":0}`,
		`{"abort_status":500,"percent":101}`,
		`{"delay_ms":-1,"percent":10}`,
		`{"delay_ms":3600000,"percent":10}`,
		`{"abort_status":500,"percent":10,"seconds":99999}`,
		`{"abort_status":500,"percent":10,"guard":{"min_tier1_success":2}}`,
		`{"abort_status":500,"percent":10,"surprise":true}`,
		`{"abort_status":500,"percent":10} trailing`,
	} {
		if code, resp := admin(t, g, "PUT", "/admin/chaos", body); code != 400 {
			t.Errorf("%s: %d %s", body, code, resp)
		}
	}
	if code, _ := do(g.AdminHandler(), "PUT", "/admin/chaos", strings.NewReader(`{"abort_status":500,"percent":10}`)); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if g.chaos.Load() != nil {
		t.Fatal("a refused experiment is running")
	}
}
