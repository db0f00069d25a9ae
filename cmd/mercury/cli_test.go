package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// mercury runs the binary's main in a subprocess and returns its output and exit status.
func mercury(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MERCURY_CMD_CHILD=1")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestHelpAndExitCodes(t *testing.T) {
	for _, args := range [][]string{{}, {"help"}, {"--help"}, {"-h"}} {
		out, code := mercury(t, args...)
		if code != 0 || !strings.Contains(out, "usage: mercury COMMAND") {
			t.Errorf("mercury %v: status %d\n%s", args, code, out)
		}
	}
	if out, code := mercury(t, "frobnicate"); code != 2 || !strings.Contains(out, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: status %d\n%s", code, out)
	}
	if out, code := mercury(t, "collector", "stray"); code != 1 || !strings.Contains(out, "unexpected arguments") {
		t.Errorf("stray argument: status %d\n%s", code, out)
	}
}

// TestSearchFlagsAnywhere: flags after the business keys are flags, not keys, and --query is
// honoured wherever it stands.
func TestSearchFlagsAnywhere(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"traces":[]}`))
	}))
	defer srv.Close()
	for _, args := range [][]string{
		{"search", "order_id=1", "--service", "api", "--query", srv.URL},
		{"search", "--query", srv.URL, "order_id=1", "--service=api"},
	} {
		got = ""
		out, code := mercury(t, args...)
		if code != 0 || got != "bk=order_id%3D1&service=api" || !strings.Contains(out, "no traces found") {
			t.Errorf("%v: status %d, query %q\n%s", args, code, got, out)
		}
	}
}

// TestSearchWithoutServer says what to do.
func TestSearchWithoutServer(t *testing.T) {
	out, code := mercury(t, "search", "order_id=1", "--query", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(out, "mercury up") || !strings.Contains(out, "--query") {
		t.Errorf("status %d\n%s", code, out)
	}
	out, code = mercury(t, "trace", "--query", "http://127.0.0.1:1", "0123456789abcdef0123456789abcdef")
	if code != 1 || !strings.Contains(out, "mercury up") {
		t.Errorf("trace: status %d\n%s", code, out)
	}
}

// TestTraceNotFoundSaysSoOnce: the API's 404 reaches the terminal as one plain sentence.
func TestTraceNotFoundSaysSoOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"trace 0123456789abcdef0123456789abcdef not found"}`))
	}))
	defer srv.Close()
	out, code := mercury(t, "trace", "0123456789abcdef0123456789abcdef", "--query", srv.URL)
	if code != 1 || strings.TrimSpace(out) != "mercury trace: trace 0123456789abcdef0123456789abcdef not found" {
		t.Errorf("status %d: %q", code, out)
	}
}

func TestSpoolCatOfNothing(t *testing.T) {
	out, code := mercury(t, "spool", "cat", "/nonexistent/spool")
	if code != 1 || !strings.Contains(out, "no such file or directory") {
		t.Errorf("missing directory: status %d\n%s", code, out)
	}
}
