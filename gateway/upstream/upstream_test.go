package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRoundRobinSkipsUnhealthy(t *testing.T) {
	p, err := New(Config{Instances: []string{"http://a:1", "http://b:1", "http://c:1"}})
	if err != nil {
		t.Fatal(err)
	}
	p.instances[1].healthy.Store(false)
	seen := map[string]int{}
	for range 6 {
		in, err := p.Pick()
		if err != nil {
			t.Fatal(err)
		}
		seen[in.URL.Host]++
		in.Done()
	}
	if seen["a:1"] != 3 || seen["c:1"] != 3 || seen["b:1"] != 0 {
		t.Fatalf("picks %v", seen)
	}
	for _, in := range p.instances {
		in.healthy.Store(false)
	}
	if _, err := p.Pick(); err != ErrNoHealthy {
		t.Fatalf("err = %v", err)
	}
}

func TestLeastLoaded(t *testing.T) {
	p, _ := New(Config{Instances: []string{"http://a:1", "http://b:1"}, Balance: LeastLoaded})
	a, _ := p.Pick()
	b, _ := p.Pick()
	if a == b {
		t.Fatal("second pick went to the loaded instance")
	}
	b.Done()
	for range 3 {
		in, _ := p.Pick()
		if in != b {
			t.Fatalf("picked %v, want the idle one", in.URL)
		}
		in.Done()
	}
	a.Done()
}

func TestActiveHealthCheck(t *testing.T) {
	var up atomic.Bool
	up.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	var changes []bool
	p, _ := New(Config{Instances: []string{srv.URL}, Health: HealthCheck{Path: "/healthz", FailAfter: 2, PassAfter: 1},
		OnHealth: func(_ string, healthy bool) { changes = append(changes, healthy) }})
	in := p.Instances()[0]
	ctx := context.Background()
	p.CheckOnce(ctx)
	up.Store(false)
	p.CheckOnce(ctx)
	if !in.Healthy() {
		t.Fatal("down after one failure")
	}
	p.CheckOnce(ctx)
	if in.Healthy() {
		t.Fatal("still up after two failures")
	}
	up.Store(true)
	p.CheckOnce(ctx)
	if !in.Healthy() {
		t.Fatal("not back after a pass")
	}
	if len(changes) != 2 || changes[0] || !changes[1] {
		t.Fatalf("changes %v", changes)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p.Run(cctx) // returns after one round once ctx is done
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Instances: []string{"ftp://x"}},
		{Instances: []string{"http://"}},
		{Instances: []string{"http://a"}, Balance: "random"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
