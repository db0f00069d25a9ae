package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/gateway/degrade"
)

const token = "s3cret"

func adminGateway(t *testing.T) (*Gateway, http.Handler, *recorder) {
	t.Helper()
	up := upstreamServer(t, ok("live"))
	songs := route1("songs", "/song/", 1, up.URL)
	songs.Remote = &UpstreamConfig{Instances: []string{up.URL}}
	songs.RateLimit = &RateLimitConfig{Limit: 100}
	songs.Timeout = TimeoutConfig{Thwm: 300 * time.Millisecond, Tmax: 500 * time.Millisecond}
	comments := route1("comments", "/comment/", 2, up.URL)
	comments.Breaker.Kind = "classic"
	comments.Breaker.FailureRatio = 0.5
	comments.Degrade.Fallback = degrade.Fallback{Kind: degrade.Static, Body: `{"comments":[]}`, ContentType: "application/json"}
	bare := route1("bare", "/bare/", 4, up.URL)
	bare.Middlewares = []string{MWTier}
	g, rec := newGateway(t, Config{AdminToken: token, Routes: []RouteConfig{songs, comments, bare},
		Plans: []PlanConfig{{Name: "festival", Routes: map[string]degrade.Setting{"comments": {On: true}}}}})
	return g, g.AdminHandler(), rec
}

func TestAdminRoutes(t *testing.T) {
	g, h, _ := adminGateway(t)
	do(g.Handler(), "GET", "/song/1", nil)
	code, body := do(h, "GET", "/admin/routes", nil)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var all []RouteStatus
	if err := json.Unmarshal([]byte(body), &all); err != nil || len(all) != 3 || all[0].Name != "songs" {
		t.Fatalf("routes %v %s", err, body)
	}
	s := all[0]
	if s.Breaker == nil || s.Breaker.State != "closed" || s.Breaker.DropProbability == nil ||
		s.RetryWindow == nil || s.RetryWindow.Size != 1 || s.RateLimit == nil || s.RateLimit.InWindow != 1 ||
		s.BBR == nil || s.TimeoutMillis != 500 || s.EMALatencyMillis == nil || s.HealthyLocal != 1 || !s.RetryEnabled ||
		len(s.Instances) != 2 || s.Instances[1].Region != "remote" || !s.Instances[0].Healthy || s.Instances[0].InFlight != 0 {
		t.Fatalf("songs status %s", body)
	}
	code, body = do(h, "GET", "/admin/routes/comments", nil)
	if code != 200 || !strings.Contains(body, `"state": "closed"`) || strings.Contains(body, "drop_probability") {
		t.Fatalf("comments: %d %s", code, body)
	}
}

func TestAdminDegradeAndPlans(t *testing.T) {
	g, h, rec := adminGateway(t)
	auth := []string{"Authorization", "Bearer " + token}
	code, body := do(h, "PUT", "/admin/routes/songs/degrade", strings.NewReader(`{"on":true,"fallback":{"kind":"static","body":"later"}}`), auth...)
	if code != 200 || !strings.Contains(body, `"on": true`) {
		t.Fatalf("degrade: %d %s", code, body)
	}
	if code, body := do(g.Handler(), "GET", "/song/1", nil); code != 200 || body != "later" {
		t.Fatalf("degraded route answered %d %q", code, body)
	}
	if o := rec.lastOutcome(); !o.Degraded || o.ShedBy != "degrade" || o.Upstream != UpstreamNone {
		t.Fatalf("outcome %+v", o)
	}
	do(h, "PUT", "/admin/routes/songs/degrade", strings.NewReader(`{"on":false}`), auth...)
	if _, body := do(g.Handler(), "GET", "/song/1", nil); body != "live" {
		t.Fatalf("after un-degrade %q", body)
	}

	if code, body := do(h, "POST", "/admin/plans/festival/apply", nil, auth...); code != 200 || !strings.Contains(body, `"applied": true`) {
		t.Fatalf("apply: %d %s", code, body)
	}
	if _, body := do(g.Handler(), "GET", "/comment/1", nil); body != `{"comments":[]}` {
		t.Fatalf("plan did not degrade comments: %q", body)
	}
	if code, _ := do(h, "POST", "/admin/plans/festival/apply", nil, auth...); code != http.StatusConflict {
		t.Fatalf("double apply: %d", code)
	}
	if code, _ := do(h, "POST", "/admin/plans/festival/revert", nil, auth...); code != 200 {
		t.Fatalf("revert: %d", code)
	}
	if _, body := do(g.Handler(), "GET", "/comment/1", nil); body != "live" {
		t.Fatalf("after revert %q", body)
	}
	want := "[degrade songs on=true reason=manual degrade songs on=false reason=manual-off " +
		"degrade comments on=true reason=manual degrade comments on=false reason=manual-off]"
	if ev := rec.eventsOf(EventDegrade); fmt.Sprint(ev) != want {
		t.Fatalf("degrade events %v\nwant %v", ev, want)
	}
	if code, _ := do(h, "PUT", "/admin/retry", strings.NewReader(`{"enabled":false,"service":"songs-svc"}`), auth...); code != http.StatusNoContent || g.Retries().Enabled("songs-svc") {
		t.Fatalf("retry switch: %d", code)
	}
}

func TestAdminHostileInput(t *testing.T) {
	_, h, _ := adminGateway(t)
	auth := []string{"Authorization", "Bearer " + token}
	long := strings.Repeat("a", 200)
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		want                     int
	}{
		{"bad route name", "GET", "/admin/routes/a%20b", "", nil, 400},
		{"dotted traversal", "GET", "/admin/routes/..%2f..%2fetc", "", nil, 400},
		{"overlong name", "GET", "/admin/routes/" + long, "", nil, 400},
		{"script name", "PUT", "/admin/routes/%3Cscript%3E/degrade", `{"on":true}`, auth, 400},
		{"unknown route", "GET", "/admin/routes/nope", "", nil, 404},
		{"no token", "PUT", "/admin/routes/songs/degrade", `{"on":true}`, nil, 401},
		{"wrong token", "PUT", "/admin/routes/songs/degrade", `{"on":true}`, []string{"Authorization", "Bearer nope"}, 401},
		{"basic auth", "PUT", "/admin/routes/songs/degrade", `{"on":true}`, []string{"Authorization", "Basic " + token}, 401},
		{"not json", "PUT", "/admin/routes/songs/degrade", `on=true`, auth, 400},
		{"unknown field", "PUT", "/admin/routes/songs/degrade", `{"on":true,"rm":"-rf"}`, auth, 400},
		{"wrong type", "PUT", "/admin/routes/songs/degrade", `{"on":"yes"}`, auth, 400},
		{"trailing data", "PUT", "/admin/routes/songs/degrade", `{"on":true}{"on":false}`, auth, 400},
		{"huge body", "PUT", "/admin/routes/songs/degrade", `{"on":true,"fallback":{"kind":"static","body":"` + strings.Repeat("x", 100<<10) + `"}}`, auth, 400},
		{"bad fallback kind", "PUT", "/admin/routes/songs/degrade", `{"on":true,"fallback":{"kind":"../../etc"}}`, auth, 400},
		{"bad fallback status", "PUT", "/admin/routes/songs/degrade", `{"on":true,"fallback":{"kind":"error","status":999}}`, auth, 400},
		{"no degrade middleware", "PUT", "/admin/routes/bare/degrade", `{"on":true}`, auth, 409},
		{"bad plan name", "POST", "/admin/plans/a;b/apply", "", auth, 400},
		{"unknown plan", "POST", "/admin/plans/nope/apply", "", auth, 404},
		{"revert unapplied", "POST", "/admin/plans/festival/revert", "", auth, 409},
		{"retry without enabled", "PUT", "/admin/retry", `{"service":"x"}`, auth, 400},
		{"retry bad service", "PUT", "/admin/retry", `{"enabled":true,"service":"a b"}`, auth, 400},
		{"wrong method", "DELETE", "/admin/routes/songs", "", nil, 405},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			if code, resp := do(h, c.method, c.path, body, c.hdr...); code != c.want {
				t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, code, resp, c.want)
			}
		})
	}
}

func TestAdminWritesNeedConfiguredToken(t *testing.T) {
	up := upstreamServer(t, ok("x"))
	g, _ := newGateway(t, Config{Routes: []RouteConfig{route1("a", "/a/", 1, up.URL)}})
	if code, _ := do(g.AdminHandler(), "PUT", "/admin/routes/a/degrade", strings.NewReader(`{"on":true}`), "Authorization", "Bearer "); code != http.StatusForbidden {
		t.Fatalf("write without configured token: %d", code)
	}
}

func TestMetricsHealthReady(t *testing.T) {
	g, h, _ := adminGateway(t)
	do(g.Handler(), "GET", "/song/1", nil)
	code, body := do(h, "GET", "/metrics", nil)
	if code != 200 {
		t.Fatal(code)
	}
	for _, want := range []string{
		`mercury_gateway_requests_total{code="2xx",route="songs"} 1`,
		`mercury_gateway_request_duration_seconds_count{route="songs"} 1`,
		`mercury_gateway_in_flight_requests{route="songs"} 0`,
		`mercury_gateway_errors_total{route="songs"} 0`,
		`mercury_gateway_retry_window{route="songs"} 1`,
		`mercury_gateway_breaker_state{route="comments"} 0`,
		`mercury_gateway_dynamic_timeout_seconds{route="songs"} 0.5`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if code, _ := do(h, "GET", "/healthz", nil); code != 200 {
		t.Fatal("healthz", code)
	}
	if code, _ := do(h, "GET", "/readyz", nil); code != 200 {
		t.Fatal("readyz", code)
	}
	g.Close()
	if code, _ := do(h, "GET", "/readyz", nil); code != 503 {
		t.Fatal("readyz while draining", code)
	}
}
