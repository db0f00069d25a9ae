package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, dir, addr string) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.Start(ctx, broker.Config{DataDir: dir, Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func topics(t *testing.T, addr string) map[string]int {
	t.Helper()
	cl, err := bus.Config{Brokers: []string{addr}}.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	md, err := cl.Metadata(context.Background(), &kafka.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, tp := range md.Topics {
		out[tp.Name] = len(tp.Partitions)
	}
	return out
}

// consume reads n messages as group g through the real kafka-go group protocol
// (JoinGroup/SyncGroup/OffsetFetch/OffsetCommit) and commits each one.
func consume(t *testing.T, addr, g string, n int) []string {
	t.Helper()
	r, err := bus.NewReader(bus.Config{Brokers: []string{addr}}, bus.ReaderConfig{Topic: bus.TopicEvents, GroupID: g})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("fetch after %d: %v", len(got), err)
		}
		got = append(got, string(m.Value))
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func TestRestartKeepsTopicsRecordsAndGroupOffsets(t *testing.T) {
	dir := t.TempDir()
	b := start(t, dir, "")
	addr := b.Addr()
	tp := topics(t, addr)
	for _, name := range bus.Topics {
		if tp[name] != bus.DefaultPartitions(name) {
			t.Fatalf("topic %s: %d partitions, want %d", name, tp[name], bus.DefaultPartitions(name))
		}
	}
	w, err := bus.NewWriter(bus.Config{Brokers: []string{addr}}, bus.WriterConfig{Topic: bus.TopicEvents})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	for i := range 20 {
		// One key: one partition, so the order the group sees is the write order.
		msgs = append(msgs, kafka.Message{Key: []byte("svc"), Value: fmt.Appendf(nil, "m%02d", i)})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	first := consume(t, addr, "g1", 8)
	if !slices.Equal(first, []string{"m00", "m01", "m02", "m03", "m04", "m05", "m06", "m07"}) {
		t.Fatalf("first read %v", first)
	}
	b.Close()

	b = start(t, dir, addr)
	defer b.Close()
	if got := topics(t, addr); got[bus.TopicSpans] != 6 || len(got) < len(bus.Topics) {
		t.Fatalf("topics after restart: %v", got)
	}
	// The writer's own transport reconnects to the restarted broker.
	if err := writeRetry(w, kafka.Message{Key: []byte("svc"), Value: []byte("m20")}); err != nil {
		t.Fatal(err)
	}
	bus.CloseWriter(w)
	rest := consume(t, addr, "g1", 13)
	if rest[0] != "m08" || rest[12] != "m20" {
		t.Fatalf("group g1 resumed at %v … %v, want m08 … m20", rest[0], rest[12])
	}
}

// writeRetry retries the first write after a restart: the pooled connection to the old
// broker fails once before the transport redials.
func writeRetry(w *kafka.Writer, m kafka.Message) error {
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = w.WriteMessages(ctx, m)
		cancel()
		if err == nil {
			return nil
		}
	}
	return errors.Join(errors.New("write after restart"), err)
}

// TestConsumeLoopAgainstBroker runs bus.Consume with a real group reader: a poison message
// lands in mercury.dlq with its origin in the headers, the others are processed, and the
// group's committed offset covers all of them.
func TestConsumeLoopAgainstBroker(t *testing.T) {
	b := start(t, "", "")
	defer b.Close()
	cfg := bus.Config{Brokers: []string{b.Addr()}}
	w, err := bus.NewWriter(cfg, bus.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	var msgs []kafka.Message
	for i := range 6 {
		msgs = append(msgs, kafka.Message{Topic: bus.TopicAlerts, Key: []byte("k"), Value: fmt.Appendf(nil, "a%d", i)})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	r, err := bus.NewReader(cfg, bus.ReaderConfig{Topic: bus.TopicAlerts, GroupID: "loop"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var seen []string
	err = bus.Consume(ctx, bus.LoopConfig{Reader: r, DLQ: w, CommitInterval: 100 * time.Millisecond, Handle: func(_ context.Context, m kafka.Message) error {
		if string(m.Value) == "a3" {
			return bus.Permanent(errors.New("poison"))
		}
		seen = append(seen, string(m.Value))
		if len(seen) == 5 {
			cancel()
		}
		return nil
	}})
	r.Close()
	if !errors.Is(err, context.Canceled) || len(seen) != 5 {
		t.Fatalf("Consume: %v, seen %v", err, seen)
	}
	dr, err := bus.NewReader(cfg, bus.ReaderConfig{Topic: bus.TopicDLQ, GroupID: "dlq-check"})
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer fcancel()
	d, err := dr.FetchMessage(fctx)
	if err != nil {
		t.Fatal(err)
	}
	topic, _ := bus.Header(d, bus.HeaderDLQTopic)
	off, _ := bus.Header(d, bus.HeaderDLQOffset)
	why, _ := bus.Header(d, bus.HeaderDLQError)
	if string(d.Value) != "a3" || topic != bus.TopicAlerts || off != "3" || why != "permanent: poison" {
		t.Fatalf("dead letter %q topic %q offset %q error %q", d.Value, topic, off, why)
	}
	// The final commit on shutdown covered offset 5: a new member of the group starts at 6.
	cl, _ := cfg.Client()
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	resp, err := cl.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: "loop", Topics: map[string][]int{bus.TopicAlerts: {0, 1, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	var maxOff int64
	for _, p := range resp.Topics[bus.TopicAlerts] {
		maxOff = max(maxOff, p.CommittedOffset)
	}
	if maxOff != 6 {
		t.Fatalf("committed offsets %+v", resp.Topics[bus.TopicAlerts])
	}
}
