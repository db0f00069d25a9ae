package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/schemas/schemastest"
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

// A damaged block costs only itself: cat prints the records of the other blocks and says what
// it stepped over, through the same reader as the shipper.
func TestSpoolCatStepsOverDamage(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(spool.Config{Dir: dir, BlockBytes: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	w := sp.Writer(spool.StreamSpans)
	r := rand.New(rand.NewPCG(3, 3))
	for range 300 {
		s := schemastest.Span(r, 2)
		w.Commit(schemas.AppendSpan(w.Pending(), &s))
	}
	w.Flush()
	sp.Close()
	segs, _ := spool.ListSegments(dir, spool.StreamSpans)
	sr, err := spool.OpenSegment(segs[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []spool.Block
	for {
		b, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, spool.Block{Offset: b.Offset, End: b.End, Records: make([][]byte, len(b.Records))})
	}
	sr.Close()
	if len(blocks) < 5 {
		t.Fatalf("%d blocks", len(blocks))
	}
	data, _ := os.ReadFile(segs[0].Path)
	hit := blocks[2]
	for i := hit.Offset + 10; i < hit.Offset+60; i++ {
		data[i] ^= 0xff
	}
	os.WriteFile(segs[0].Path, data, 0o644)

	var out, warn bytes.Buffer
	if err := catSpool(&out, dir, []string{"spans"}, &warn); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 300-len(hit.Records) {
		t.Fatalf("printed %d spans, want %d", n, 300-len(hit.Records))
	}
	want := fmt.Sprintf("stepped over 1 damaged block(s), %d bytes, %d records lost", hit.End-hit.Offset, len(hit.Records))
	if !strings.Contains(warn.String(), want) {
		t.Fatalf("warning %q lacks %q", warn.String(), want)
	}
}
