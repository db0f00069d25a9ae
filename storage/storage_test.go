package storage_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// TestEmbeddedStoreHasOneUser: a second Open of the same data directory fails at once with a
// message that says what to do, not a bare "resource temporarily unavailable".
func TestEmbeddedStoreHasOneUser(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(context.Background(), storage.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = storage.Open(context.Background(), storage.Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), "--data") {
		t.Fatalf("second open: %v", err)
	}
}

// TestRetentionDropsOldDays: RunRetention drops the days past the retention at once.
func TestRetentionDropsOldDays(t *testing.T) {
	s, err := storage.Open(context.Background(), storage.Config{DataDir: t.TempDir(), Retention: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	span := func(at time.Time, b byte) schemas.Span {
		return schemas.Span{TraceID: schemas.TraceID{b}, SpanID: schemas.SpanID{b}, Service: "s", StartUnixNano: at.UnixNano(), SampleRate: 1}
	}
	old, recent := time.Now().Add(-10*24*time.Hour), time.Now()
	ctx := context.Background()
	if err := s.Traces.WriteSpans(ctx, []schemas.Span{span(old, 1), span(recent, 2)}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.RunRetention(rctx, slog.New(slog.DiscardHandler)) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Traces.Rows.GetTrace(ctx, schemas.TraceID{1})
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the 10-day-old trace was not dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Traces.Rows.GetTrace(ctx, schemas.TraceID{2}); err != nil {
		t.Fatalf("the recent trace went too: %v", err)
	}
	if _, err := s.Traces.Rows.GetTrace(ctx, schemas.TraceID{1}); !strings.Contains(err.Error(), tracestore.ErrNotFound.Error()) {
		t.Fatalf("old trace: %v", err)
	}
}
