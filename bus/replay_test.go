package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
)

// Dead letters go back to their topics as they were, once; a rerun replays only newer ones;
// a dry run changes nothing; records without a known origin or replayed too often stay put.
func TestReplayDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b, err := broker.New(ctx, broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := bus.Config{Brokers: []string{b.Addr()}}
	dlq, err := bus.NewWriter(cfg, bus.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(dlq)
	deadLetter := func(topic, value string, headers ...kafka.Header) {
		t.Helper()
		m := kafka.Message{Topic: topic, Partition: 2, Offset: 7, Key: []byte("k-" + value), Value: []byte(value), Headers: headers}
		if err := bus.SendDLQ(ctx, dlq, m, errors.New("unknown writer schema fingerprint")); err != nil {
			t.Fatal(err)
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	replay := func(rc bus.ReplayConfig) bus.ReplayStats {
		t.Helper()
		rc.Logger = quiet
		st, err := bus.Replay(ctx, cfg, rc)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	deadLetter(bus.TopicSpans, "a", kafka.Header{Key: "x", Value: []byte("1")})
	deadLetter(bus.TopicSpans, "b")
	deadLetter("not.mercury", "c")
	deadLetter(bus.TopicEvents, "d", kafka.Header{Key: bus.HeaderReplays, Value: []byte("3")})
	if st := replay(bus.ReplayConfig{DryRun: true}); st != (bus.ReplayStats{Replayed: 2, Skipped: 2}) {
		t.Fatalf("dry run: %+v", st)
	}
	var reported []string
	st := replay(bus.ReplayConfig{Report: func(m kafka.Message, to string, skipped error) {
		reported = append(reported, fmt.Sprintf("%s→%s:%v", m.Value, to, skipped))
	}})
	if st != (bus.ReplayStats{Replayed: 2, Skipped: 2}) {
		t.Fatalf("replay after the dry run: %+v (%v)", st, reported)
	}
	got := readAll(t, cfg, bus.TopicSpans, 2)
	if got["a"] != "x=1,mercury.replays=1" || got["b"] != "mercury.replays=1" {
		t.Fatalf("replayed records and headers: %v", got)
	}
	if st := replay(bus.ReplayConfig{}); st != (bus.ReplayStats{}) {
		t.Fatalf("a rerun replayed again: %+v", st)
	}
	deadLetter(bus.TopicSpans, "e")
	if st := replay(bus.ReplayConfig{}); st != (bus.ReplayStats{Replayed: 1}) {
		t.Fatalf("only the new dead letter should replay: %+v", st)
	}

	// --follow replays what arrives until it is stopped, and reports the cancellation. Records
	// are handled one after the other, so once "g" (which has no origin and only counts as
	// skipped, whether or not its commit finishes before the stop) is reported, "f" has been
	// produced and committed: the stop needs no guess of how long that takes.
	fctx, stop := context.WithCancel(ctx)
	seen := make(chan string, 2)
	done := make(chan bus.ReplayStats)
	go func() {
		st, err := bus.Replay(fctx, cfg, bus.ReplayConfig{Follow: true, Logger: quiet,
			Report: func(m kafka.Message, _ string, _ error) { seen <- string(m.Value) }})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("follow ended with %v", err)
		}
		done <- st
	}()
	deadLetter(bus.TopicSpans, "f")
	if v := <-seen; v != "f" {
		t.Fatalf("follow reported %q first", v)
	}
	deadLetter("not.mercury", "g")
	if v := <-seen; v != "g" {
		t.Fatalf("follow reported %q second", v)
	}
	stop()
	if st := <-done; st != (bus.ReplayStats{Replayed: 1, Skipped: 1}) {
		t.Fatalf("follow: %+v", st)
	}
}

// readAll reads n records of topic and returns value → its headers.
func readAll(t *testing.T, cfg bus.Config, topic string, n int) map[string]string {
	t.Helper()
	r, err := bus.NewReader(cfg, bus.ReaderConfig{Topic: topic, GroupID: "replay-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]string{}
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", len(got), err)
		}
		var hs []string
		for _, h := range m.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		got[string(m.Value)] = strings.Join(hs, ",")
	}
	return got
}

// With no broker, Replay fails with an error instead of hanging.
func TestReplayWithoutBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = bus.Replay(ctx, bus.Config{Brokers: []string{addr}, DialTimeout: time.Second}, bus.ReplayConfig{})
	if err == nil || ctx.Err() != nil {
		t.Fatalf("err = %v, ctx: %v", err, ctx.Err())
	}
}
