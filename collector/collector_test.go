package collector_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/internal/retry"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/collector"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// The crash test re-runs this test binary as the collector process, so it can be SIGKILLed.
func TestMain(m *testing.M) {
	if os.Getenv("MERCURY_COLLECTOR_CHILD") == "1" {
		os.Exit(childCollector())
	}
	os.Exit(m.Run())
}

func childCollector() int {
	ctx, stop := signalContext()
	defer stop()
	db, err := pebblestore.Open(os.Getenv("MERCURY_STORE_DIR"), pebblestore.Options{})
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	defer db.Close()
	var rows tracestore.Rows = db
	if n, err := strconv.Atoi(os.Getenv("MERCURY_STALL_AFTER")); err == nil {
		rows = &stallingRows{Rows: db, after: n}
	}
	c, err := newCollector(bus.Config{Brokers: []string{os.Getenv("MERCURY_BROKERS")}}, tracestore.New(db, rows), slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Println("new:", err)
		return 1
	}
	if err := c.Run(ctx); err != nil {
		fmt.Println("run:", err)
		return 1
	}
	return 0
}

// stallingRows stores spans until after of them are stored, then says so on stdout and hangs
// in the next write: the parent kills the process at a point it chose, not at whatever point
// a progress report happened to reach it.
type stallingRows struct {
	tracestore.Rows
	after, stored int
}

func (s *stallingRows) PutSpans(ctx context.Context, spans []schemas.Span) error {
	if s.stored >= s.after {
		fmt.Printf("stalled after %d spans\n", s.stored)
		<-ctx.Done()
		return ctx.Err()
	}
	s.stored += len(spans)
	return s.Rows.PutSpans(ctx, spans)
}

func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signalNotify(ch)
	go func() { <-ch; cancel() }()
	return ctx, cancel
}

func newCollector(cfg bus.Config, store *tracestore.Store, log *slog.Logger) (*collector.Collector, error) {
	return collector.New(collector.Config{Bus: cfg, Store: store, Telemetry: daemon.Telemetry{Logger: log}, BatchSize: 2000})
}

const spansPerTrace = 10

func traceID(i int) schemas.TraceID {
	return schemas.TraceID{0xc0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// produce writes traces×spansPerTrace spans and the garbage records to mercury.spans.
func produce(t testing.TB, cfg bus.Config, traces int, garbage ...[]byte) {
	t.Helper()
	w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicSpans})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := time.Now()
	var msgs []kafka.Message
	flush := func() {
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[:0]
	}
	for i := 0; i < traces; i++ {
		tid := traceID(i)
		for j := 0; j < spansPerTrace; j++ {
			s := schemas.Span{TraceID: tid, SpanID: schemas.SpanID{byte(j + 1)}, Service: "svc" + strconv.Itoa(j%3),
				Operation: "op", StartUnixNano: now.UnixNano() + int64(j), DurationNano: 1000, SampleRate: 1,
				BusinessKeys: []schemas.KV{{Key: "order_id", Value: strconv.Itoa(i)}}}
			if j > 0 {
				s.ParentSpanID = schemas.SpanID{byte(j)}
			}
			v, _ := schemas.Marshal(&s)
			msgs = append(msgs, kafka.Message{Key: []byte(tid.String()), Value: v})
		}
		if len(msgs) >= 5000 {
			flush()
		}
	}
	for _, g := range garbage {
		msgs = append(msgs, kafka.Message{Key: []byte("x"), Value: g})
	}
	flush()
}

// verify asserts every span of every trace is stored exactly once and findable by key.
func verify(t *testing.T, store *tracestore.Store, traces int) {
	t.Helper()
	ctx := context.Background()
	for start := 0; start < traces; start += 500 {
		var ids []schemas.TraceID
		for i := start; i < min(start+500, traces); i++ {
			ids = append(ids, traceID(i))
		}
		got, err := store.Rows.GetTraces(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			seen := map[schemas.SpanID]int{}
			for _, s := range got[id] {
				seen[s.SpanID]++
			}
			if len(got[id]) != spansPerTrace || len(seen) != spansPerTrace {
				t.Fatalf("trace %s: %d spans (%d distinct), want %d", id, len(got[id]), len(seen), spansPerTrace)
			}
		}
	}
	for _, i := range []int{0, traces / 2, traces - 1} {
		refs, err := store.Index.Search(ctx, tracestore.Query{BusinessKeys: []schemas.KV{{Key: "order_id", Value: strconv.Itoa(i)}}})
		if err != nil || len(refs) != 1 || refs[0].TraceID != traceID(i) {
			t.Fatalf("search order %d: %v %v", i, refs, err)
		}
	}
}

func startBroker(t testing.TB) (bus.Config, *broker.Broker) {
	t.Helper()
	b, err := broker.New(context.Background(), broker.Config{DataDir: t.TempDir(), Partitions: map[string]int{bus.TopicSpans: 6}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	cfg := bus.Config{Brokers: []string{b.Addr()}}
	if err := bus.EnsureTopics(context.Background(), cfg, nil); err != nil {
		t.Fatal(err)
	}
	return cfg, b
}

func TestCollectsAndDeadLetters(t *testing.T) {
	cfg, _ := startBroker(t)
	garbage := [][]byte{[]byte("not avro at all"), {0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9}}
	produce(t, cfg, 300, garbage...)
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store := tracestore.New(db, db)
	c, err := newCollector(cfg, store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, func() bool { return c.Stats().Spans >= 300*spansPerTrace && c.Stats().DLQ == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	verify(t, store, 300)

	// The DLQ holds both garbage records, each with the reason in a header.
	r, _ := bus.NewReader(cfg, bus.ReaderConfig{Topic: bus.TopicDLQ, GroupID: "dlq-check"})
	defer r.Close()
	for range garbage {
		fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
		m, err := r.FetchMessage(fctx)
		fcancel()
		if err != nil {
			t.Fatal(err)
		}
		if why, ok := bus.Header(m, bus.HeaderDLQError); !ok || why == "" {
			t.Fatalf("dead letter without an error header: %+v", m.Headers)
		}
	}
	if lag := groupLag(t, cfg, collector.Group); lag != 0 {
		t.Fatalf("after a graceful stop the group lags by %d", lag)
	}
}

// groupLag is the end offsets minus the group's committed offsets over mercury.spans.
func groupLag(t *testing.T, cfg bus.Config, group string) int64 {
	t.Helper()
	cl, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	parts := make([]int, 6)
	var reqs []kafka.OffsetRequest
	for i := range parts {
		parts[i] = i
		reqs = append(reqs, kafka.LastOffsetOf(i))
	}
	ends, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{bus.TopicSpans: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	committed, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{bus.TopicSpans: parts}})
	if err != nil {
		t.Fatal(err)
	}
	var lag int64
	for _, p := range ends.Topics[bus.TopicSpans] {
		end := p.LastOffset
		for _, c := range committed.Topics[bus.TopicSpans] {
			if c.Partition == p.Partition {
				lag += end - max(c.CommittedOffset, 0)
			}
		}
	}
	return lag
}

// TestCrashAnywhere SIGKILLs the collector process in the middle of 200,000 spans, restarts
// it, and checks that every span is stored exactly once.
func TestCrashAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: 200,000 spans")
	}
	const traces = 20000
	cfg, _ := startBroker(t)
	produce(t, cfg, traces)
	dir := t.TempDir()
	child := func(stdout io.Writer, env ...string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "MERCURY_COLLECTOR_CHILD=1", "MERCURY_STORE_DIR="+dir, "MERCURY_BROKERS="+cfg.Brokers[0])
		cmd.Env = append(cmd.Env, env...)
		cmd.Stdout, cmd.Stderr = stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// First run: stall the store once a quarter is written, with later batches fetched and
	// possibly indexed, and kill -9 there.
	pr, pw := io.Pipe()
	cmd := child(pw, "MERCURY_STALL_AFTER="+strconv.Itoa(traces*spansPerTrace/4))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	out := bufio.NewScanner(pr)
	for out.Scan() && !strings.HasPrefix(out.Text(), "stalled ") {
	}
	if out.Err() != nil || !strings.HasPrefix(out.Text(), "stalled ") {
		t.Fatalf("the collector ended before it stalled: %v", <-exited)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	go io.Copy(io.Discard, pr)
	<-exited
	if lag := groupLag(t, cfg, collector.Group); lag == 0 {
		t.Fatal("the killed collector had committed everything")
	}
	// Second run: to the end, then a graceful stop.
	cmd = child(io.Discard)
	deadline := time.Now().Add(2 * time.Minute)
	for groupLag(t, cfg, collector.Group) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the restarted collector did not catch up in 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	db, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	verify(t, tracestore.New(db, db), traces)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flakyRows fails its first writes like a store that is down, then recovers.
type flakyRows struct {
	tracestore.Rows
	failures atomic.Int32
}

func (f *flakyRows) PutSpans(ctx context.Context, spans []schemas.Span) error {
	if f.failures.Add(-1) >= 0 {
		return retry.Retryable(errors.New("HTTP 503 from the store"))
	}
	return f.Rows.PutSpans(ctx, spans)
}

func TestDeadStoreIsRetriedNeverSkipped(t *testing.T) {
	cfg, _ := startBroker(t)
	produce(t, cfg, 50)
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := &flakyRows{Rows: db}
	rows.failures.Store(4)
	store := tracestore.New(db, rows)
	c, err := collector.New(collector.Config{Bus: cfg, Store: store, Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)},
		Backoff: retry.Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, func() bool { return c.Stats().Spans >= 50*spansPerTrace })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.StoreErrors != 4 {
		t.Fatalf("store errors %d, want 4", st.StoreErrors)
	}
	verify(t, store, 50)
}

// Spans starting outside [now-MaxAge, now+1h] are dead-lettered: a broken clock or a replay
// of long-expired data must not open store resources for every day it names.
func TestStartOutsideWindowIsDeadLettered(t *testing.T) {
	cfg, _ := startBroker(t)
	w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicSpans})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	for i, start := range []time.Time{time.Unix(0, 0), time.Now().Add(48 * time.Hour), time.Now()} {
		s := schemas.Span{TraceID: traceID(900 + i), SpanID: schemas.SpanID{1}, Service: "svc", StartUnixNano: start.UnixNano(), SampleRate: 1}
		v, _ := schemas.Marshal(&s)
		msgs = append(msgs, kafka.Message{Key: []byte(s.TraceID.String()), Value: v})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	bus.CloseWriter(w)
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, err := collector.New(collector.Config{Bus: cfg, Store: tracestore.New(db, db), MaxAge: 7 * 24 * time.Hour,
		Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, func() bool { st := c.Stats(); return st.Spans == 1 && st.DLQ == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if days := db.Days(); len(days) != 1 {
		t.Fatalf("store opened %d days, want 1: %v", len(days), days)
	}
}
