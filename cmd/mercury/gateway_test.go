package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/internal/testproc"
	"github.com/mercury-apm/mercury/schemas"
)

func TestGatewayConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: \":0\"\nroutes: []\n"), 0o644)
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("listen: \":0\"\nroutess: []\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml: no such file"},
		{[]string{"--config", bad}, "config has no routes"},
		{[]string{"--config", typo}, "field routess not found"},
		{[]string{"--config", bad, "extra"}, "unexpected arguments"},
	} {
		spoolDir := filepath.Join(dir, "spool")
		err := commands["gateway"].run(context.Background(), append(c.args, "--spool", spoolDir))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want %q", c.args, err, c.want)
		}
		if _, serr := os.Stat(spoolDir); serr == nil {
			t.Errorf("%v: a config error still created the spool", c.args)
		}
	}
}

// TestGatewayServesAndTraces runs the command in process: it proxies to an
// upstream, and once its context ends it drains and the agent has flushed
// the request's span to the spool.
func TestGatewayServesAndTraces(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") }))
	defer up.Close()
	dir := t.TempDir()
	listen, admin := testproc.FreeAddr(t), testproc.FreeAddr(t)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(cfgPath, fmt.Appendf(nil, `listen: %q
admin_listen: %q
shutdown_timeout: 2s
routes:
  - name: hello
    prefix: /hello/
    service: hello-svc
    tier: 1
    local: {instances: [%q]}
`, listen, admin, up.URL), 0o644)
	spoolDir := filepath.Join(dir, "spool")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- commands["gateway"].run(ctx, []string{"--config", cfgPath, "--spool", spoolDir, "--service", "edge"})
	}()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := client.Get("http://" + listen + "/hello/world")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway never answered: %v", err)
		}
		select {
		case err := <-errc:
			t.Fatalf("gateway stopped: %v", err)
		case <-time.After(20 * time.Millisecond): // waiting for the listener; no clock to fake
		}
	}
	if body != "hello" {
		t.Fatalf("proxied body %q", body)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	var ops []string
	if _, err := spool.Scan(spoolDir, spool.StreamSpans, func(s *schemas.Schema, b []byte) error {
		var sp schemas.Span
		_, err := schemas.DecodeBinary(s.Fingerprint, b, &sp)
		ops = append(ops, sp.Service+" "+sp.Operation)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0] != "edge hello" {
		t.Fatalf("spans on disk: %v", ops)
	}
}

// TestGatewayReloadsOnSIGHUP: a SIGHUP makes the running command reload its
// config file (what a broken file does is TestConfigWatch's business).
func TestGatewayReloadsOnSIGHUP(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") }))
	defer up.Close()
	dir := t.TempDir()
	listen, admin := testproc.FreeAddr(t), testproc.FreeAddr(t)
	cfgPath := filepath.Join(dir, "gateway.yaml")
	writeConfig := func(prefixes ...string) {
		var b strings.Builder
		fmt.Fprintf(&b, "listen: %q\nadmin_listen: %q\nshutdown_timeout: 2s\nroutes:\n", listen, admin)
		for _, p := range prefixes {
			fmt.Fprintf(&b, "  - {name: %s, prefix: /%s/, service: %s-svc, tier: 1, local: {instances: [%q]}}\n", p, p, p, up.URL)
		}
		os.WriteFile(cfgPath, []byte(b.String()), 0o644)
	}
	writeConfig("hello")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- commands["gateway"].run(ctx, []string{"--config", cfgPath, "--spool", filepath.Join(dir, "spool"), "--watch", "0"})
	}()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	status := func(path string) int {
		resp, err := client.Get("http://" + listen + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// until waits for the gateway to reach a state; there is no clock to fake
	// for a listener coming up or a signal being handled.
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
			select {
			case err := <-errc:
				t.Fatalf("gateway stopped: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	until("serving /hello/", func() bool { return status("/hello/x") == 200 })
	if status("/bye/x") != 404 {
		t.Fatal("/bye/ served before the reload")
	}
	writeConfig("hello", "bye")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	until("serving /bye/ after SIGHUP", func() bool { return status("/bye/x") == 200 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
