package gateway

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/gateway/degrade"
	"github.com/mercury-apm/mercury/internal/clock"
)

// The gateway's own 429 and 503 say when to come back; its 502/504 and an
// upstream's own answers do not get one.
func TestRetryAfterOnRefusals(t *testing.T) {
	up := upstreamServer(t, ok("ok"))
	limited := route1("limited", "/limited/", 1, up.URL)
	limited.RateLimit = &RateLimitConfig{Limit: 1, Window: time.Second}
	degraded := route1("degraded", "/degraded/", 1, up.URL)
	degraded.Degrade.Fallback = degrade.Fallback{Kind: degrade.Error}
	dead := route1("dead", "/dead/", 1, "http://127.0.0.1:1")
	clk := clock.NewFake(time.Hour)
	g, _ := newGateway(t, Config{Clock: clk, RetryAfter: 1500 * time.Millisecond, Routes: []RouteConfig{limited, degraded, dead}})
	g.route("degraded").degrade.Apply(degrade.Setting{On: true})
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		g.Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w
	}
	get("/limited/x")
	for _, c := range []struct {
		path       string
		code       int
		retryAfter string
	}{
		{"/limited/x", 429, "2"},
		{"/degraded/x", 503, "2"},
		{"/dead/x", 502, ""},
		{"/limited/y", 429, "2"},
	} {
		w := get(c.path)
		if w.Code != c.code || w.Header().Get("Retry-After") != c.retryAfter {
			t.Errorf("%s: %d Retry-After %q, want %d %q", c.path, w.Code, w.Header().Get("Retry-After"), c.code, c.retryAfter)
		}
	}
}

// net/http/pprof is on the admin listener, behind the admin token.
func TestPprofNeedsTheAdminToken(t *testing.T) {
	_, admin, _ := adminGateway(t)
	for _, c := range []struct {
		path, auth string
		code       int
	}{
		{"/debug/pprof/", "", 401},
		{"/debug/pprof/heap?debug=1", "Bearer wrong", 401},
		{"/debug/pprof/", "Bearer " + token, 200},
		{"/debug/pprof/heap?debug=1", "Bearer " + token, 200},
		{"/debug/pprof/cmdline", "Bearer " + token, 200},
	} {
		req := httptest.NewRequest("GET", c.path, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		admin.ServeHTTP(w, req)
		if w.Code != c.code {
			t.Errorf("%s with %q: %d, want %d", c.path, c.auth, w.Code, c.code)
		}
		if c.code == 200 && c.path == "/debug/pprof/heap?debug=1" && !strings.Contains(w.Body.String(), "heap profile") {
			t.Errorf("heap profile body %.80q", w.Body.String())
		}
	}
}
