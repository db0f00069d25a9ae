package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mercury-apm/mercury/gateway/degrade"
)

// planGateway has four routes (one per tier) and a plan that sets every kind
// of knob; stateFile may be "".
func planGateway(t *testing.T, stateFile string) (*Gateway, *recorder) {
	t.Helper()
	up := upstreamServer(t, ok("live"))
	songs := route1("songs", "/song/", 1, up.URL)
	songs.RateLimit = &RateLimitConfig{Limit: 1000}
	comments := route1("comments", "/comment/", 2, up.URL)
	comments.Degrade.Fallback = degrade.Fallback{Kind: degrade.Static, Body: "no comments"}
	off, zero := false, 0.0
	return newGateway(t, Config{AdminToken: token, StateFile: stateFile, Routes: []RouteConfig{songs, comments,
		route1("ranks", "/rank/", 3, up.URL), route1("reddot", "/reddot/", 4, up.URL)},
		Plans: []PlanConfig{{Name: "festival",
			Routes:     map[string]degrade.Setting{"comments": {On: true}},
			Retry:      &PlanRetry{Enabled: &off, Services: map[string]bool{"ranks-svc": false}},
			Limits:     map[string]int64{"songs": 1},
			ShedTiers:  []int{4},
			SampleRate: &zero,
		}}})
}

func admin(t *testing.T, g *Gateway, method, path, body string) (int, string) {
	t.Helper()
	return do(g.AdminHandler(), method, path, strings.NewReader(body), "Authorization", "Bearer "+token)
}

// A plan sets degradation, retry switches, a rate limit, a shed tier and the
// trace sample rate at once, and revert puts every one back.
func TestPlanSetsEveryKnobAndReverts(t *testing.T) {
	g, rec := planGateway(t, "")
	h := g.Handler()
	if code, body := admin(t, g, "POST", "/admin/plans/festival/apply", ""); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	seen := len(rec.outcomes)
	if _, body := do(h, "GET", "/comment/1", nil); body != "no comments" {
		t.Fatalf("comments not degraded: %q", body)
	}
	if g.Retries().Global() || g.Retries().Service("ranks-svc") {
		t.Fatal("retry switches not set")
	}
	do(h, "GET", "/song/1", nil)
	if code, _ := do(h, "GET", "/song/1", nil); code != 429 {
		t.Fatalf("limit 1 not applied: second request %d", code)
	}
	if code, _ := do(h, "GET", "/reddot/1", nil); code != 503 {
		t.Fatalf("tier 4 not shed: %d", code)
	}
	if code, _ := do(h, "GET", "/rank/1", nil); code != 200 {
		t.Fatalf("tier 3 shed too: %d", code)
	}
	if n := len(rec.outcomes) - seen; n != 0 {
		t.Fatalf("sample rate 0, but the observer saw %d requests", n)
	}
	if code, _ := admin(t, g, "POST", "/admin/plans/festival/apply", ""); code != 409 {
		t.Fatalf("double apply: %d", code)
	}
	if code, body := do(g.AdminHandler(), "GET", "/admin/plans", nil); code != 200 ||
		!strings.Contains(body, `"applied": true`) || !strings.Contains(body, `"songs": 1000`) {
		t.Fatalf("GET /admin/plans: %d %s", code, body)
	}
	if code, body := admin(t, g, "POST", "/admin/plans/festival/revert", ""); code != 200 {
		t.Fatalf("revert: %d %s", code, body)
	}
	if _, body := do(h, "GET", "/comment/1", nil); body != "live" {
		t.Fatalf("comments still degraded: %q", body)
	}
	if !g.Retries().Global() || !g.Retries().Service("ranks-svc") || g.route("songs").limiter.Stats().Limit != 1000 {
		t.Fatal("retry switches or limit not restored")
	}
	if code, _ := do(h, "GET", "/reddot/1", nil); code != 200 || len(rec.outcomes) == seen {
		t.Fatalf("tier 4 still shed (%d) or sampling not restored", code)
	}
}

// The state file keeps what the operator and plans set across a restart,
// and the restored plan still reverts to what it replaced.
func TestStateSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway-state.json")
	g1, _ := planGateway(t, path)
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/admin/routes/comments/degrade", `{"on":false,"fallback":{"kind":"static","body":"quiet"}}`},
		{"PUT", "/admin/retry", `{"enabled":false,"service":"songs-svc"}`},
		{"PUT", "/admin/dye", `{"enabled":false}`},
		{"POST", "/admin/plans/festival/apply", ""},
	} {
		if code, body := admin(t, g1, c.method, c.path, c.body); code >= 300 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, code, body)
		}
	}
	g1.Close()

	g2, _ := planGateway(t, path)
	h := g2.Handler()
	if _, body := do(h, "GET", "/comment/1", nil); body != "quiet" {
		t.Fatalf("degradation not restored: %q", body)
	}
	if g2.Retries().Service("songs-svc") || g2.Retries().Global() || !g2.dyeOff.Load() {
		t.Fatal("retry or dye switches not restored")
	}
	if code, _ := do(h, "GET", "/reddot/1", nil); code != 503 {
		t.Fatalf("plan's shed tier not restored: %d", code)
	}
	if code, body := admin(t, g2, "POST", "/admin/plans/festival/revert", ""); code != 200 {
		t.Fatalf("restored plan does not revert: %d %s", code, body)
	}
	if _, body := do(h, "GET", "/comment/1", nil); body != "live" {
		t.Fatalf("revert after restart: comments %q", body)
	}
	if !g2.Retries().Global() || g2.Retries().Service("songs-svc") || g2.route("songs").limiter.Stats().Limit != 1000 {
		t.Fatal("revert after restart did not restore the pre-plan switches")
	}
}

// A malformed state file stops New with a clear error and is left as it
// is; entries for routes the config lost are skipped.
func TestBadStateFile(t *testing.T) {
	dir := t.TempDir()
	up := upstreamServer(t, ok("x"))
	cfg := func(path string) Config {
		return Config{Logger: quiet, StateFile: path, Routes: []RouteConfig{route1("a", "/a/", 1, up.URL)}}
	}
	for name, body := range map[string]string{
		"garbage":       "{not json",
		"unknown field": `{"version":1,"retry_global":true,"dye_enabled":true,"sample_rate":1,"surprise":1}`,
		"version":       `{"version":9}`,
		"sample rate":   `{"version":1,"sample_rate":7}`,
		"bad tier":      `{"version":1,"sample_rate":1,"shed_tiers":[0]}`,
		"bad fallback":  `{"version":1,"sample_rate":1,"degrade":{"a":{"on":true,"fallback":{"kind":"soup"}}}}`,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
		os.WriteFile(path, []byte(body), 0o644)
		if _, err := New(cfg(path)); err == nil || !strings.Contains(err.Error(), "state file") {
			t.Errorf("%s: err %v", name, err)
		}
		if b, _ := os.ReadFile(path); string(b) != body {
			t.Errorf("%s: the bad file was changed", name)
		}
	}
	path := filepath.Join(dir, "stale.json")
	os.WriteFile(path, []byte(`{"version":1,"retry_global":true,"dye_enabled":true,"sample_rate":1,"degrade":{"gone":{"on":true}},"plans":{"old":{}}}`), 0o644)
	g, err := New(cfg(path))
	if err != nil {
		t.Fatalf("stale entries should be skipped: %v", err)
	}
	g.Close()
}
