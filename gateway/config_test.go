package gateway

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseExampleConfig(t *testing.T) {
	c, err := LoadConfig("testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 3 || c.Routes[0].Timeout.Thwm.String() != "300ms" || c.Routes[1].Breaker.Kind != "classic" {
		t.Fatalf("parsed %+v", c.Routes)
	}
	// The example must not expose the proxy on every interface, nor take mercury up's 8080.
	for _, addr := range []string{c.Listen, c.AdminListen} {
		if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":8080") {
			t.Errorf("example listens on %q: want loopback, not mercury up's port", addr)
		}
	}
	c.Logger = quiet
	g, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
}

// TestAdminTokenFromTheCommonVariable: the gateway reads MERCURY_ADMIN_TOKEN, the one
// variable every daemon reads, when the config names no token.
func TestAdminTokenFromTheCommonVariable(t *testing.T) {
	t.Setenv("MERCURY_ADMIN_TOKEN", "from-env")
	c, err := LoadConfig("testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c.Logger = quiet
	c.StateFile = ""
	g, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.AdminHandler()
	for token, want := range map[string]int{"from-env": 204, "wrong": 401} {
		req := httptest.NewRequest("PUT", "/admin/dye", strings.NewReader(`{"enabled":true}`))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("token %q: %d %s, want %d", token, rec.Code, rec.Body, want)
		}
	}
}

func TestMalformedConfig(t *testing.T) {
	const route = "routes:\n  - name: a\n    prefix: /a/\n    service: a\n    tier: 1\n    local: {instances: [\"http://127.0.0.1:1\"]}\n"
	cases := []struct{ name, yaml, want string }{
		{"empty", "", "config is empty"},
		{"syntax", "routes: [", "config:"},
		{"unknown field", "routs: []", "field routs not found"},
		{"no routes", "listen: :1\n", "no routes"},
		{"bad duration", route + "    timeout: {thwm: fast}\n", "cannot unmarshal"},
		{"bad name", strings.Replace(route, "name: a", "name: \"a b\"", 1), "name must match"},
		{"bad tier", strings.Replace(route, "tier: 1", "tier: 7", 1), "tier must be 1–4"},
		{"no tier", strings.Replace(route, "tier: 1", "tier: 0", 1), "tier must be 1–4"},
		{"bad prefix", strings.Replace(route, "prefix: /a/", "prefix: a", 1), "prefix must start with /"},
		{"duplicate", route + strings.Replace(route, "routes:\n", "", 1), "duplicate route name"},
		{"no instances", strings.Replace(route, `["http://127.0.0.1:1"]`, "[]", 1), "local.instances is required"},
		{"unknown middleware", route + "    middlewares: [magic]\n", "unknown middleware \"magic\""},
		{"ratelimit without section", route + "    middlewares: [ratelimit]\n", "needs a ratelimit section"},
		{"retry on 501", route + "    retry: {on_status: [500, 501]}\n", "on_status 501"},
		{"retry on 505", route + "    retry: {on_status: [505]}\n", "on_status 505"},
		{"retry on 404", route + "    retry: {on_status: [404]}\n", "only 408, 429 and 5xx"},
		{"retry on unknown error", route + "    retry: {on_errors: [flaky]}\n", "on_errors \"flaky\""},
		{"timeout rate bound", route + "    retry: {timeout_rate_bound: 1.5}\n", "timeout_rate_bound"},
		{"negative budget", route + "    budget: -1s\n", "must not be negative"},
		{"dynamic timeout without thwm", route + "    middlewares: [dynamic_timeout]\n", "needs timeout.thwm"},
		{"plan unknown route", route + "plans:\n  - name: p\n    routes: {b: {on: true}}\n", "unknown route \"b\""},
		{"plan limit on unknown route", route + "plans:\n  - name: p\n    limits: {b: 5}\n", "limits: unknown route \"b\""},
		{"plan limit without ratelimit", route + "plans:\n  - name: p\n    limits: {a: 5}\n", "has no ratelimit middleware"},
		{"plan shed tier", route + "plans:\n  - name: p\n    shed_tiers: [5]\n", "tier 5 is not 1–4"},
		{"plan sample rate", route + "plans:\n  - name: p\n    sample_rate: 1.5\n", "sample_rate must be in [0,1]"},
		{"plan bad fallback", route + "plans:\n  - name: p\n    routes: {a: {on: true, fallback: {kind: soup}}}\n", "unknown fallback kind"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

// Settings only the primitives can judge fail in New, named by route.
func TestNewRejectsBadPrimitiveSettings(t *testing.T) {
	const route = "routes:\n  - name: a\n    prefix: /a/\n    service: a\n    tier: 1\n    local: {instances: [\"http://127.0.0.1:1\"]}\n"
	cases := []struct{ name, extra, want string }{
		{"breaker kind", "    breaker: {kind: fuse}\n", "unknown breaker kind"},
		{"sre k", "    breaker: {k: 5}\n", "k must be in [1.5, 2]"},
		{"ratelimit", "    ratelimit: {limit: -1}\n", "limit must be"},
		{"timeout", "    timeout: {thwm: 1s, tmax: 10ms}\n", "thwm ≤ tmax"},
		{"instance url", "", "not an http(s) URL"},
		{"degrade auto", "    degrade: {auto: {error_rate: 3}}\n", "rates must be in [0,1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := route + c.extra
			if c.name == "instance url" {
				y = strings.Replace(y, "http://127.0.0.1:1", "localhost:1", 1)
			}
			cfg, err := ParseConfig(strings.NewReader(y))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Logger = quiet
			_, err = New(cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `route "a"`) {
				t.Fatalf("err = %v, want route \"a\" and %q", err, c.want)
			}
		})
	}
}
