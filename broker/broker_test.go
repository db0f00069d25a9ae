package broker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
)

func TestMain(m *testing.M) {
	if os.Getenv("MERCURY_BROKER_CHILD") != "" {
		childBroker() // re-executed by TestKilledBrokerKeepsAcknowledgedData; never returns
	}
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, dir, addr string) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := broker.New(ctx, broker.Config{DataDir: dir, Addr: addr})
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
func writeRetry(w *kafka.Writer, m ...kafka.Message) error {
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = w.WriteMessages(ctx, m...)
		cancel()
		if err == nil {
			return nil
		}
	}
	return errors.Join(errors.New("write after restart"), err)
}

// complete and in order.
func TestProducerMatchesWriterPartitioning(t *testing.T) {
	b := start(t, "", "")
	defer b.Close()
	cfg := bus.Config{Brokers: []string{b.Addr()}}
	p, err := bus.NewProducer(cfg, bus.ProducerConfig{Topic: bus.TopicSpans, MaxRequestBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicSpans})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	var msgs []kafka.Message
	for i := range 300 {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "trace-%d", i%7), Value: fmt.Appendf(nil, "p%03d", i)})
	}
	ctx := context.Background()
	if err := p.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		if err := w.WriteMessages(ctx, kafka.Message{Key: fmt.Appendf(nil, "trace-%d", i), Value: fmt.Appendf(nil, "w%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := bus.NewReader(cfg, bus.ReaderConfig{Topic: bus.TopicSpans, GroupID: "partitioning"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	partOf := map[string]int{}
	last := map[string]string{}
	for range 307 {
		m, err := r.FetchMessage(fctx)
		if err != nil {
			t.Fatal(err)
		}
		k, v := string(m.Key), string(m.Value)
		if pt, ok := partOf[k]; ok && pt != m.Partition {
			t.Fatalf("key %s in partitions %d and %d", k, pt, m.Partition)
		}
		partOf[k] = m.Partition
		if v[0] == 'p' && last[k] > v {
			t.Fatalf("key %s: %s after %s", k, v, last[k])
		}
		if v[0] == 'p' {
			last[k] = v
		}
	}
}

// TestReaderSurvivesBrokerRestart: a group reader that is fetching while the broker restarts
// on the same address and data directory goes on fetching after its committed offset. Its
// commits fail until kafka-go notices the dead coordinator connection and rejoins the group
// (a couple of seconds), then succeed; bus.Consume therefore treats a failed commit as
// retryable.
func TestReaderSurvivesBrokerRestart(t *testing.T) {
	dir := t.TempDir()
	b := start(t, dir, "")
	addr := b.Addr()
	cfg := bus.Config{Brokers: []string{addr}}
	write := func(vals ...string) {
		t.Helper()
		w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicHeartbeats})
		if err != nil {
			t.Fatal(err)
		}
		defer bus.CloseWriter(w)
		var msgs []kafka.Message
		for _, v := range vals {
			msgs = append(msgs, kafka.Message{Key: []byte("svc/h"), Value: []byte(v)})
		}
		if err := writeRetry(w, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reader := func() *kafka.Reader {
		r, err := bus.NewReader(cfg, bus.ReaderConfig{Topic: bus.TopicHeartbeats, GroupID: "restart"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	failed := 0
	next := func(r *kafka.Reader) string {
		t.Helper()
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for r.CommitMessages(ctx, m) != nil {
			failed++
			time.Sleep(100 * time.Millisecond) // waiting for kafka-go's own rejoin; nothing to poll
		}
		return string(m.Value)
	}
	write("a", "b")
	r := reader()
	if v := next(r); v != "a" {
		t.Fatalf("got %s", v)
	}
	b.Close()
	b = start(t, dir, addr)
	defer b.Close()
	write("c")
	// The rejoin restarts fetching at the committed offset, so what was fetched but not
	// committed before it comes again: b may be read twice (at least once, as designed).
	var got []string
	for len(got) == 0 || got[len(got)-1] != "c" {
		got = append(got, next(r))
	}
	for _, v := range got[:len(got)-1] {
		if v != "b" {
			t.Fatalf("after restart read %v, want b (maybe repeated) then c", got)
		}
	}
	r.Close()
	t.Logf("after the restart: read %v, %d failed commits before kafka-go rejoined", got, failed)
	write("d")
	r = reader()
	defer r.Close()
	if v := next(r); v != "d" {
		t.Fatalf("a new member starts at %s, want d (the commits after the restart were lost)", v)
	}
}
