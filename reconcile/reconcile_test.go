package reconcile_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/reconcile"
	"github.com/mercury-apm/mercury/reconcile/reconciletest"
	"github.com/mercury-apm/mercury/schemas"
)

func TestAlign(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	from, to, err := reconcile.Align(at("2026-12-04T10:00:30Z"), at("2026-12-04T10:05:00.000000001Z"))
	if err != nil || !from.Equal(at("2026-12-04T10:00:00Z")) || !to.Equal(at("2026-12-04T10:06:00Z")) {
		t.Fatalf("Align: %v %v %v", from, to, err)
	}
	if _, _, err := reconcile.Align(at("2026-12-04T10:00:10Z"), at("2026-12-04T10:00:50Z")); err != nil {
		t.Fatalf("a range within one minute is that minute: %v", err)
	}
	for _, r := range [][2]time.Time{
		{at("2026-12-04T10:00:00Z"), at("2026-12-04T10:00:00Z")},
		{at("2026-12-04T10:01:00Z"), at("2026-12-04T10:00:00Z")},
		{at("2026-12-04T10:00:00Z"), at("2026-12-04T16:00:01Z")},
		{{}, at("2026-12-04T10:00:00Z")},
	} {
		if _, _, err := reconcile.Align(r[0], r[1]); !errors.Is(err, reconcile.ErrInvalidRange) {
			t.Errorf("Align(%v, %v) = %v, want ErrInvalidRange", r[0], r[1], err)
		}
	}
}

// Records are found by their Kafka timestamp: one shipped more than Skew before the range or
// more than Lateness after it is not read, even if its span starts inside the range.
func TestTopicWindowFollowsKafkaTimestamps(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := reconciletest.Start(t, ctx)
	bc, traces, ms := env.Bus, env.Traces, env.Metrics

	m := time.Now().Truncate(time.Minute).Add(-3 * time.Hour)
	var msgs []kafka.Message
	for i, shipped := range []time.Time{m.Add(-time.Hour), m.Add(-4 * time.Minute), m.Add(90 * time.Second), m.Add(29 * time.Minute), m.Add(2 * time.Hour)} {
		sp := schemas.Span{TraceID: schemas.TraceID{0xee, byte(i)}, SpanID: schemas.SpanID{1}, Service: "svc", StartUnixNano: m.Add(time.Second).UnixNano(), SampleRate: 1}
		v, err := schemas.Marshal(&sp)
		if err != nil {
			t.Fatal(err)
		}
		// Same key: one partition, in offset order whatever the timestamps.
		msgs = append(msgs, kafka.Message{Topic: bus.TopicSpans, Key: []byte("k"), Value: v, Time: shipped})
	}
	w, err := bus.NewWriter(bc, bus.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	rep, err := reconcile.Run(ctx, reconcile.Config{Bus: bc, Traces: traces, Metrics: ms}, m, m.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// Shipped 4 min before the range (within the 5 min skew), 30 s and 28 min after its end
	// (within the 30 min lateness): three of five; an hour before and two after are not read.
	if len(rep.Rows) != 1 || rep.Rows[0].Shipped != 3 || rep.Rows[0].Reported != nil || rep.Missing != 1 || rep.Rows[0].LostAt() != reconcile.StageStored {
		t.Fatalf("report %+v", rep)
	}
}
