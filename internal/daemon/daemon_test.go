package daemon_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/internal/daemon"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestGroupStopsAllOnFirstFailure: one member failing cancels the others and Wait reports
// that failure; members ending because the group did are no failure.
func TestGroupStopsAllOnFirstFailure(t *testing.T) {
	g := daemon.NewGroup(context.Background())
	boom := errors.New("boom")
	stopped := make(chan struct{})
	g.Go("waiter", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return ctx.Err() })
	g.Go("failer", func(context.Context) error { return boom })
	if err := g.Wait(); !errors.Is(err, boom) || !strings.Contains(err.Error(), "failer") {
		t.Fatalf("Wait: %v", err)
	}
	<-stopped

	ctx, cancel := context.WithCancel(context.Background())
	g = daemon.NewGroup(ctx)
	g.Go("a", func(ctx context.Context) error { <-ctx.Done(); return nil })
	g.Go("b", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	cancel()
	if err := g.Wait(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}

	g = daemon.NewGroup(context.Background())
	g.Go("quitter", func(context.Context) error { return nil })
	if err := g.Wait(); err == nil || !strings.Contains(err.Error(), "stopped on its own") {
		t.Fatalf("a member returning early: %v", err)
	}
}

type component struct {
	mu    sync.Mutex
	ready error
	route string
	ran   chan struct{}
}

func (c *component) Run(ctx context.Context) error { close(c.ran); <-ctx.Done(); return nil }
func (c *component) Ready() error                  { c.mu.Lock(); defer c.mu.Unlock(); return c.ready }
func (c *component) setReady(err error)            { c.mu.Lock(); c.ready = err; c.mu.Unlock() }
func (c *component) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+c.route, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hi") })
}

// TestRunServesRoutesHealthAndReadiness: Run mounts the components' routes beside /metrics,
// /healthz and /readyz; /readyz names the component that is not ready; a signal (ctx) ends
// Run cleanly.
func TestRunServesRoutesHealthAndReadiness(t *testing.T) {
	ln, err := daemon.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tel := daemon.Telemetry{Registry: prometheus.NewRegistry()}
	ok := &component{route: "/hello", ran: make(chan struct{})}
	notReady := &component{route: "/other", ready: errors.New("store down"), ran: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{Name: "test", Telemetry: tel, Listener: ln, Components: []daemon.Component{ok, notReady}})
	}()
	<-ok.ran
	<-notReady.ran
	get := func(path string) (int, string) {
		for range 100 {
			resp, err := http.Get(ln.URL() + path)
			if err != nil {
				time.Sleep(10 * time.Millisecond) // the server goroutine may not accept yet
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
		t.Fatalf("%s: no answer", path)
		return 0, ""
	}
	if code, body := get("/hello"); code != 200 || body != "hi" {
		t.Errorf("/hello: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "store down") {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if code, _ := get("/metrics"); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
	notReady.setReady(nil)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz once ready: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

// TestServerBoundsClients: a client that sends its body too slowly, one that never reads the
// response, and a huge header each cost a bounded time and are refused or cut off.
func TestServerBoundsClients(t *testing.T) {
	ln, err := daemon.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1<<20)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			for range 64 {
				if _, err := io.WriteString(w, big); err != nil {
					return
				}
			}
			return
		}
		io.Copy(io.Discard, r.Body)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ln.Serve(ctx, h, daemon.ServerConfig{ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond, MaxHeaderBytes: 8 << 10})
	}()
	defer func() { cancel(); <-done }()

	// Slow body: the connection is closed once ReadTimeout passed, not held for ever.
	c, err := net.Dial("tcp", ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, rerr := io.ReadAll(c)
	c.Close()
	if el := time.Since(start); rerr != nil || el > 5*time.Second {
		t.Fatalf("slow body held the connection %v (%v)", el, rerr)
	}

	// Slow reader: a 64 MiB response to a client that reads nothing ends at WriteTimeout.
	c, err = net.Dial("tcp", ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(time.Second) // not reading: the server's writes block, then time out
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := io.Copy(io.Discard, c)
	c.Close()
	if n >= 64<<20 {
		t.Fatalf("a client that did not read got the whole %d bytes", n)
	}

	// Huge header: 431.
	c, err = net.Dial("tcp", ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("y", 1_000_000))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("1 MB header: %v %v", resp, err)
	}
}
