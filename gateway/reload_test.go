package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/gateway/degrade"
	"github.com/mercury-apm/mercury/gateway/upstream"
)

// reloadConfig is version i of a config: route "a" alternates between two
// upstreams (so it is rebuilt), "keep" never changes (so it is carried over)
// and "extra" comes and goes.
func reloadConfig(i int, ups ...string) Config {
	a := route1("a", "/a/", 1, ups[i%2])
	a.Local.HealthCheck = upstream.HealthCheck{Path: "/", Interval: time.Hour}
	a.Remote = &UpstreamConfig{Instances: []string{ups[(i+1)%2]}}
	a.Breaker.Kind = "sre"
	a.Timeout = TimeoutConfig{Thwm: time.Second, Tmax: 2 * time.Second}
	routes := []RouteConfig{a, route1("keep", "/keep/", 2, ups[0])}
	if i%3 == 0 {
		routes = append(routes, route1("extra", "/extra/", 3, ups[1]))
	}
	return Config{Routes: routes, MaxInFlight: int64(1000 + i)}
}

// Forty reloads while eight clients hammer the gateway: not one request
// fails, and the last config is the one serving.
func TestScenarioReloadUnderLoad(t *testing.T) {
	upA, upB := upstreamServer(t, ok("A")), upstreamServer(t, ok("B"))
	g, _ := newGateway(t, reloadConfig(0, upA.URL, upB.URL))
	ctx, cancel := context.WithCancel(context.Background())
	wait := g.Start(ctx)
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	var stop atomic.Bool
	var total, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			path := []string{"/a/x", "/keep/x"}[c%2]
			for !stop.Load() {
				resp, err := client.Get(srv.URL + path)
				total.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %d", path, resp.StatusCode))
				}
			}
		})
	}
	keep := g.route("keep")
	for i := 1; i <= 40; i++ {
		if err := g.Reload(reloadConfig(i, upA.URL, upB.URL)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		for n := total.Load(); total.Load() < n+20; { // let some traffic through each version
			runtime.Gosched()
		}
	}
	stop.Store(true)
	wg.Wait()
	cancel()
	wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", n, total.Load(), firstErr.Load())
	}
	if g.route("keep") != keep {
		t.Fatal("the unchanged route was rebuilt")
	}
	if code, body := do(g.Handler(), "GET", "/a/x", nil); code != 200 || body != "A" { // version 40: ups[0]
		t.Fatalf("after the last reload: %d %q", code, body)
	}
	if code, _ := do(g.Handler(), "GET", "/extra/x", nil); code != 404 { // 40 % 3 ≠ 0: gone
		t.Fatalf("removed route still served: %d", code)
	}
	t.Logf("%d requests, 0 failed, over 40 reloads", total.Load())
}

// A reload that is wrong is refused whole, and the running config stays.
func TestReloadRefusals(t *testing.T) {
	up := upstreamServer(t, ok("up"))
	base := func() Config {
		c := route1("c", "/c/", 2, up.URL)
		c.Degrade.Fallback = degrade.Fallback{Kind: degrade.Static, Body: "later"}
		return Config{AdminToken: token, Listen: ":18080", Routes: []RouteConfig{route1("a", "/a/", 1, up.URL), c},
			Plans: []PlanConfig{{Name: "p", Routes: map[string]degrade.Setting{"c": {On: true}}}}}
	}
	g, _ := newGateway(t, base())
	if code, _ := admin(t, g, "POST", "/admin/plans/p/apply", ""); code != 200 {
		t.Fatal("apply failed")
	}
	for name, c := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"invalid":           {func(c *Config) { c.Routes[0].Tier = 9 }, "tier must be 1–4"},
		"bad primitive":     {func(c *Config) { c.Routes[0].Local.Balance = "random" }, "unknown balance"},
		"listen":            {func(c *Config) { c.Listen = ":9999" }, "restart for the rest"},
		"admin token":       {func(c *Config) { c.AdminToken = "other" }, "restart for the rest"},
		"applied plan gone": {func(c *Config) { c.Plans = nil }, `plan "p" is applied`},
		"route of a plan":   {func(c *Config) { c.Routes[1].Tier = 3 }, `route "c" is set by applied plan "p"`},
	} {
		cfg := base()
		c.mutate(&cfg)
		if err := g.Reload(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
	}
	if code, body := do(g.Handler(), "GET", "/c/x", nil); code != 200 || body != "later" {
		t.Fatalf("running config changed by refused reloads: %d %q", code, body)
	}
}

// A rebuilt route keeps the operator's manual degradation; an unchanged one
// keeps all of its state.
func TestReloadKeepsOperatorState(t *testing.T) {
	up := upstreamServer(t, ok("up"))
	cfg := func(tier int) Config {
		a := route1("a", "/a/", tier, up.URL)
		a.Degrade.Fallback = degrade.Fallback{Kind: degrade.Static, Body: "a later"}
		b := route1("b", "/b/", 1, up.URL)
		b.Breaker = BreakerConfig{Kind: "classic", MaxFailures: 1}
		return Config{Routes: []RouteConfig{a, b}}
	}
	g, _ := newGateway(t, cfg(1))
	g.route("a").degrade.Apply(degrade.Setting{On: true})
	done, _ := g.route("b").breaker.Allow()
	done(fmt.Errorf("boom")) // opens b's breaker
	if err := g.Reload(cfg(2)); err != nil {
		t.Fatal(err)
	}
	if _, body := do(g.Handler(), "GET", "/a/x", nil); body != "a later" {
		t.Fatalf("rebuilt route lost its manual degradation: %q", body)
	}
	if code, _ := do(g.Handler(), "GET", "/b/x", nil); code != 503 {
		t.Fatalf("unchanged route lost its open breaker: %d", code)
	}
}

// The file watcher reloads on a content change only, and a bad version is
// reported once while the running config stays.
func TestConfigWatch(t *testing.T) {
	up := upstreamServer(t, ok("up"))
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	write := func(routes ...string) {
		var b strings.Builder
		b.WriteString("routes:\n")
		for _, r := range routes {
			fmt.Fprintf(&b, "  - {name: %s, prefix: /%s/, service: %s, tier: 1, local: {instances: [%q]}}\n", r, r, r, up.URL)
		}
		os.WriteFile(path, []byte(b.String()), 0o644)
	}
	write("a")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := newGateway(t, cfg)
	w := newConfigWatch(g, path)
	if reloaded, err := w.check(); reloaded || err != nil {
		t.Fatalf("unchanged file: %v %v", reloaded, err)
	}
	write("a", "b")
	if reloaded, err := w.check(); !reloaded || err != nil || g.route("b") == nil {
		t.Fatalf("changed file: %v %v", reloaded, err)
	}
	os.WriteFile(path, []byte("routes: [\n"), 0o644)
	if _, err := w.check(); err == nil {
		t.Fatal("broken file reloaded")
	}
	if _, err := w.check(); err != nil {
		t.Fatalf("the same broken file reported twice: %v", err)
	}
	if code, _ := do(g.Handler(), "GET", "/b/x", nil); code != 200 {
		t.Fatalf("running config lost after a broken file: %d", code)
	}
}
