package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

func route1(name, prefix string, tier int, local ...string) RouteConfig {
	return RouteConfig{Name: name, Prefix: prefix, Service: name + "-svc", Tier: tier, Local: UpstreamConfig{Instances: local}}
}

// An upstream's 103 Early Hints reach the client, and the status reported (metrics, span,
// breaker) is the final one.
func TestEarlyHintsAreNotTheStatus(t *testing.T) {
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusNotFound)
	})
	g, rec := newGateway(t, Config{Routes: []RouteConfig{route1("songs", "/", 1, up.URL)}})
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	var hints []int
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { hints = append(hints, code); return nil },
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/x", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || len(hints) != 1 || hints[0] != http.StatusEarlyHints {
		t.Fatalf("client got %d after 1xx %v", resp.StatusCode, hints)
	}
	if o := rec.lastOutcome(); o.Status != http.StatusNotFound {
		t.Fatalf("reported status %d, want 404", o.Status)
	}
}

func TestProxyBasics(t *testing.T) {
	var gotDye, gotPath, gotXF atomic.Value
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		gotDye.Store(r.Header.Get(DyeHeader))
		gotPath.Store(r.URL.Path)
		gotXF.Store([]string{r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto")})
		io.WriteString(w, "hello")
	})
	rc := route1("songs", "/song/", 1, up.URL)
	rc.StripPrefix = true
	other := route1("songlists", "/song/list/", 2, up.URL)
	g, rec := newGateway(t, Config{Routes: []RouteConfig{rc, other}})
	h := g.Handler()

	// The client's X-Forwarded-For is replaced, not trusted.
	code, body := do(h, "GET", "/song/42", nil, DyeHeader, "loadtest-7", "X-Forwarded-For", "10.6.6.6")
	if code != 200 || body != "hello" {
		t.Fatalf("%d %q", code, body)
	}
	xf := gotXF.Load().([]string) // httptest.NewRequest's client and host
	if gotDye.Load() != "loadtest-7" || gotPath.Load() != "/42" || xf[0] != "192.0.2.1" || xf[1] != "example.com" || xf[2] != "http" {
		t.Fatalf("upstream saw dye=%v path=%v x-forwarded=%q", gotDye.Load(), gotPath.Load(), xf)
	}
	o := rec.lastOutcome()
	if !o.Dyed || o.Upstream != UpstreamLocal || o.Status != 200 || o.ShedBy != "" {
		t.Fatalf("outcome %+v", o)
	}
	// Longest prefix wins; no route is a 404.
	do(h, "GET", "/song/list/1", nil)
	if gotPath.Load() != "/song/list/1" {
		t.Fatalf("longest prefix: upstream path %v", gotPath.Load())
	}
	if code, _ := do(h, "GET", "/nope", nil); code != 404 {
		t.Fatalf("unrouted: %d", code)
	}
}

func TestUpstreamDownIs502AndNoHealthyIs503(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	rc := route1("a", "/a/", 1, dead)
	rc.Local.HealthCheck.Path = "/healthz"
	g, rec := newGateway(t, Config{Routes: []RouteConfig{rc}})
	if code, _ := do(g.Handler(), "GET", "/a/x", nil); code != http.StatusBadGateway {
		t.Fatalf("dead upstream: %d", code)
	}
	for range 2 { // fail_after defaults to 2
		g.route("a").local.CheckOnce(context.Background())
	}
	if code, _ := do(g.Handler(), "GET", "/a/x", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("no healthy instance: %d", code)
	}
	if ev := rec.eventsOf(EventUpstreamHealth); len(ev) != 1 || !strings.Contains(ev[0], "healthy=false") {
		t.Fatalf("health events %v", ev)
	}
}

func TestNonIdempotentNotRetriedUnlessAllowed(t *testing.T) {
	var remoteHits atomic.Int64
	local := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	remote := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		remoteHits.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	mk := func(name string, nonIdem bool) RouteConfig {
		rc := route1(name, "/"+name+"/", 1, local.URL)
		rc.Remote = &UpstreamConfig{Instances: []string{remote.URL}}
		rc.Retry.NonIdempotent = nonIdem
		rc.Middlewares = []string{MWRetry}
		return rc
	}
	clk := clock.NewFake(time.Hour)
	g, rec := newGateway(t, Config{Clock: clk, Routes: []RouteConfig{mk("strict", false), mk("lenient", true)}})
	if code, _ := do(g.Handler(), "POST", "/strict/x", strings.NewReader("order")); code != 500 || remoteHits.Load() != 0 {
		t.Fatalf("POST retried on a strict route: %d, remote hits %d", code, remoteHits.Load())
	}
	// The body is replayed byte for byte.
	code, body := do(g.Handler(), "POST", "/lenient/x", strings.NewReader("order"))
	if code != 200 || body != "order" || remoteHits.Load() != 1 {
		t.Fatalf("lenient POST: %d %q hits %d", code, body, remoteHits.Load())
	}
	if o := rec.lastOutcome(); !o.Retried || !o.FailedOver || o.Upstream != UpstreamRemote {
		t.Fatalf("outcome %+v", o)
	}
	// The retry switches turn failover off globally and per service.
	clk.Advance(time.Second) // a fresh round, so the window is not what stops it
	g.Retries().SetService("lenient-svc", false)
	if code, _ := do(g.Handler(), "POST", "/lenient/x", strings.NewReader("order")); code != 500 || remoteHits.Load() != 1 {
		t.Fatalf("service switch off: %d, remote hits %d", code, remoteHits.Load())
	}
	g.Retries().SetService("lenient-svc", true)
	g.Retries().SetGlobal(false)
	if code, _ := do(g.Handler(), "POST", "/lenient/x", strings.NewReader("order")); code != 500 || remoteHits.Load() != 1 {
		t.Fatalf("global switch off: %d, remote hits %d", code, remoteHits.Load())
	}
	g.Retries().SetGlobal(true)
	if code, _ := do(g.Handler(), "POST", "/lenient/x", strings.NewReader("order")); code != 200 || remoteHits.Load() != 2 {
		t.Fatalf("switches back on: %d, remote hits %d", code, remoteHits.Load())
	}
}

func TestRunServesAndShutsDownGracefully(t *testing.T) {
	release := make(chan struct{})
	up := upstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "slow")
	})
	g, _ := newGateway(t, Config{Routes: []RouteConfig{route1("a", "/a/", 1, up.URL)}, ShutdownTimeout: 5 * time.Second})
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	admin := httptest.NewServer(g.AdminHandler())
	defer admin.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Serve(ctx, pl) }()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func(url string) (int, string) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(admin.URL + "/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	slow := make(chan string)
	go func() { _, b := get("http://" + pl.Addr().String() + "/a/x"); slow <- b }()
	time.Sleep(50 * time.Millisecond) // let the request reach the upstream
	cancel()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if b := <-slow; b != "slow" {
		t.Fatalf("in-flight request during shutdown got %q", b)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code, body := get(admin.URL + "/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("readyz after the drain: %d %s", code, body)
	}
}
