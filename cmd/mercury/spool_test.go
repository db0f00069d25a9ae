package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mercury-apm/mercury/agent"
)

func TestSpoolCat(t *testing.T) {
	dir := t.TempDir()
	a, err := agent.New(agent.Config{Service: "order", Domain: "shop", SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, s := a.StartSpan(context.Background(), "GET /order/{id}")
	s.SetBusinessKey("order_id", "12345")
	s.End()
	a.Close(context.Background())
	// A garbage segment is reported and skipped, not fatal.
	os.WriteFile(filepath.Join(dir, "spans", "00000000000000000001.avro"), []byte("junk"), 0o644)

	var out, warn bytes.Buffer
	if err := catSpool(&out, dir, []string{"spans", "heartbeats"}, &warn); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var span map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &span); err != nil {
		t.Fatal(err)
	}
	if span["operation"] != "GET /order/{id}" || span["stream"] != "spans" || len(span["trace_id"].(string)) != 32 {
		t.Fatalf("span line: %s", lines[0])
	}
	if bk := span["business_keys"].(map[string]any); bk["order_id"] != "12345" {
		t.Fatalf("business keys: %v", bk)
	}
	if !strings.Contains(out.String(), `"stream":"heartbeats"`) {
		t.Fatal("no heartbeat printed")
	}
	if !strings.Contains(warn.String(), "skipped 1") {
		t.Fatalf("warning: %q", warn.String())
	}
	if err := catSpool(&out, dir, []string{"nope"}, &warn); err == nil {
		t.Fatal("unknown stream accepted")
	}
}
