package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
)

func TestDLQReplayCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := broker.New(ctx, broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w, err := bus.NewWriter(bus.Config{Brokers: []string{b.Addr()}}, bus.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	m := kafka.Message{Topic: bus.TopicSpans, Partition: 1, Offset: 41, Value: []byte("span")}
	if err := bus.SendDLQ(ctx, w, m, errors.New("schemas: unknown writer schema fingerprint")); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := dlqCommand(ctx, &out, []string{"replay", "--brokers", b.Addr(), "--dry-run"}); err != nil {
		t.Fatal(err)
	}
	want := `from "mercury.spans" → mercury.spans (failed: schemas: unknown writer schema fingerprint)`
	if !strings.Contains(out.String(), want) || !strings.HasSuffix(out.String(), "would replay 1, skipped 0\n") {
		t.Fatalf("dry run printed:\n%s", out.String())
	}
	out.Reset()
	if err := dlqCommand(ctx, &out, []string{"replay", "--brokers", b.Addr(), "--quiet"}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "replayed 1, skipped 0\n" {
		t.Fatalf("replay printed %q", out.String())
	}
	if err := dlqCommand(ctx, &out, []string{"purge"}); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("unknown subcommand: %v", err)
	}
}
