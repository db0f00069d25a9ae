package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestSlogObserverLogsRequestsOnlyAtDebug(t *testing.T) {
	var buf bytes.Buffer
	ctx := context.Background()
	route := RouteInfo{Name: "songs", Tier: 1}
	info := SlogObserver{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	info.RequestDone(ctx, route, Outcome{Status: 200})
	if buf.Len() != 0 {
		t.Fatalf("request logged at Info: %s", buf.String())
	}
	info.Event(EventBreaker, route, slog.String("from", "closed"), slog.String("to", "open"))
	if got := buf.String(); !strings.Contains(got, "kind=breaker_state route=songs from=closed to=open") {
		t.Fatalf("event line %q", got)
	}
	buf.Reset()
	debug := SlogObserver{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	debug.RequestDone(ctx, route, Outcome{Status: 503, ShedBy: "tier"})
	if got := buf.String(); !strings.Contains(got, "route=songs") || !strings.Contains(got, "shed_by=tier") {
		t.Fatalf("debug request line %q", got)
	}
	if debug.RequestStart(ctx, route, nil) != ctx || (NopObserver{}).RequestStart(ctx, route, nil) != ctx {
		t.Fatal("RequestStart must pass the context through")
	}
}
