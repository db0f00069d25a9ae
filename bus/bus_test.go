package bus_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/bus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeReader serves msgs in order, then blocks until the fetch context ends.
type fakeReader struct {
	mu        sync.Mutex
	msgs      []kafka.Message
	committed map[int]int64 // partition → next offset to read (what Kafka stores)
}

func (f *fakeReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	f.mu.Lock()
	if len(f.msgs) > 0 {
		m := f.msgs[0]
		f.msgs = f.msgs[1:]
		f.mu.Unlock()
		return m, nil
	}
	f.mu.Unlock()
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}

func (f *fakeReader) CommitMessages(_ context.Context, msgs ...kafka.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		if m.Offset+1 > f.committed[m.Partition] {
			f.committed[m.Partition] = m.Offset + 1
		}
	}
	return nil
}

type fakeWriter struct {
	mu   sync.Mutex
	msgs []kafka.Message
	fail int // fail this many writes first
}

func (w *fakeWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail > 0 {
		w.fail--
		return errors.New("broker unavailable")
	}
	w.msgs = append(w.msgs, msgs...)
	return nil
}

var errPoison = errors.New("cannot decode")

func TestConsumeRetriesDeadLettersAndCommits(t *testing.T) {
	r := &fakeReader{committed: map[int]int64{}}
	for p := range 2 {
		for o := range 5 {
			r.msgs = append(r.msgs, kafka.Message{Topic: bus.TopicSpans, Partition: p, Offset: int64(o), Value: fmt.Appendf(nil, "%d/%d", p, o)})
		}
	}
	dlq := &fakeWriter{fail: 1}
	attempts := map[string]int{}
	var processed []string
	ctx, cancel := context.WithCancel(context.Background())
	handle := func(_ context.Context, m kafka.Message) error {
		v := string(m.Value)
		attempts[v]++
		switch {
		case v == "0/2":
			return fmt.Errorf("decode span: %w", bus.Permanent(errPoison))
		case v == "1/1" && attempts[v] < 3:
			return errors.New("store timeout") // retryable
		}
		processed = append(processed, v)
		if len(processed) == 9 {
			cancel()
		}
		return nil
	}
	err := bus.Consume(ctx, bus.LoopConfig{
		Reader: r, Handle: handle, DLQ: dlq, CommitEvery: 3,
		BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume returned %v", err)
	}
	if attempts["1/1"] != 3 {
		t.Fatalf("retryable message tried %d times, want 3", attempts["1/1"])
	}
	if len(dlq.msgs) != 1 {
		t.Fatalf("dead letters: %d", len(dlq.msgs))
	}
	d := dlq.msgs[0]
	for k, want := range map[string]string{bus.HeaderDLQTopic: bus.TopicSpans, bus.HeaderDLQPartition: "0", bus.HeaderDLQOffset: "2"} {
		if got, _ := bus.Header(d, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if e, _ := bus.Header(d, bus.HeaderDLQError); e == "" || d.Topic != bus.TopicDLQ || string(d.Value) != "0/2" {
		t.Errorf("dead letter %+v", d)
	}
	// Shutdown committed everything processed: offset 5 (next to read) on both partitions.
	if r.committed[0] != 5 || r.committed[1] != 5 {
		t.Fatalf("committed %v", r.committed)
	}
}

func TestConsumeStopsOnPermanentErrorWithoutDLQ(t *testing.T) {
	r := &fakeReader{committed: map[int]int64{}, msgs: []kafka.Message{{Offset: 0}, {Offset: 1}}}
	err := bus.Consume(context.Background(), bus.LoopConfig{
		Reader: r, Handle: func(_ context.Context, m kafka.Message) error {
			if m.Offset == 1 {
				return bus.Permanent(errPoison)
			}
			return nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if !errors.Is(err, errPoison) || !bus.IsPermanent(err) {
		t.Fatalf("err %v", err)
	}
}

func TestBackoffIsBoundedExponential(t *testing.T) {
	b := bus.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{10, 20, 40, 50, 50}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff %v", got)
		}
	}
	b.Reset()
	if b.Next() != 10*time.Millisecond {
		t.Fatal("reset")
	}
}

func TestFlagsAndSASL(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr bool
	}{
		{[]string{"--brokers", "a:9092, b:9092"}, false},
		{[]string{"--brokers", ""}, true},
		{[]string{"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "u"}, false},
		{[]string{"--sasl-mechanism", "GSSAPI"}, true},
		{[]string{"--tls", "--tls-ca", "/nonexistent"}, true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f := bus.RegisterFlags(fs, "127.0.0.1:9092")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		c, err := f.Config()
		if (err != nil) != tc.wantErr {
			t.Errorf("%v: err %v", tc.args, err)
		}
		if err == nil && len(c.Brokers) == 0 {
			t.Errorf("%v: no brokers", tc.args)
		}
	}
	if _, err := (bus.Config{Brokers: []string{"x:1"}, SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: "p"}).Transport(); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.ParseCompression("brotli"); err == nil {
		t.Fatal("unknown compression accepted")
	}
}
