package aggregator_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/aggregator"
	"github.com/mercury-apm/mercury/aggregator/oracle"
	"github.com/mercury-apm/mercury/aggregator/phase1"
	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/testproc"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

// base is the event time the generated traffic starts at.
var base = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

const (
	eventSpan = time.Hour // event time the traffic covers
	lateness  = 30 * time.Minute
)

// dataset is generated traffic in production order, with each span's partition.
type dataset struct {
	msgs  []kafka.Message
	spans []schemas.Span
	part  []int
}

// generate makes n spans: most start within seconds of "now" (which moves through the hour),
// 5 % up to 25 minutes late, 1 % 40 to 60 minutes late (too late once the partition's
// watermark has moved on); 8 services, operations, hosts, client calls to instrumented and
// virtual peers, errors, sample rates, dyed load-test spans.
func generate(n int, seed uint64) *dataset {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	parts := make([]int, bus.DefaultPartitions(bus.TopicSpans))
	for i := range parts {
		parts[i] = i
	}
	bal := kafka.Murmur2Balancer{}
	d := &dataset{msgs: make([]kafka.Message, n), spans: make([]schemas.Span, n), part: make([]int, n)}
	rates := []float64{1, 1, 0.5, 0.1, 0.3}
	peers := []string{"payment", "orders-db", "cache"}
	for i := range n {
		now := base.UnixNano() + int64(eventSpan)*int64(i)/int64(n)
		start := now - rng.Int64N(int64(5*time.Second))
		switch r := rng.IntN(100); {
		case r < 5:
			start = now - rng.Int64N(int64(25*time.Minute))
		case r == 5:
			start = now - int64(40*time.Minute) - rng.Int64N(int64(20*time.Minute))
		}
		svc := rng.IntN(8)
		s := schemas.Span{
			Domain: "shop", Service: fmt.Sprintf("svc%d", svc), Operation: fmt.Sprintf("GET /r%d/{id}", rng.IntN(4)),
			Kind: schemas.KindServer, Host: fmt.Sprintf("h%d", rng.IntN(2)), StartUnixNano: start,
			DurationNano: int64(math.Exp(rng.NormFloat64()*1.2 + 14)), SampleRate: rates[rng.IntN(len(rates))],
			Dyed: rng.IntN(100) == 0,
		}
		if rng.IntN(4) == 0 {
			s.Kind, s.Operation, s.Peer = schemas.KindClient, "HTTP POST", peers[rng.IntN(len(peers))]
		}
		if rng.IntN(30) == 0 {
			s.Status = schemas.StatusError
		}
		for j := range s.TraceID {
			s.TraceID[j] = byte(rng.Uint32())
		}
		s.SpanID[0], s.SpanID[7] = byte(i), 1
		key := []byte(s.TraceID.String())
		v := schemas.AppendSpan(schemas.AppendSingleHeader(nil, schemas.Current(schemas.NameSpan).Fingerprint), &s)
		d.msgs[i] = kafka.Message{Key: key, Value: v}
		d.spans[i], d.part[i] = s, bal.Balance(kafka.Message{Key: key}, parts...)
	}
	return d
}

// compute is the batch recomputation of the dataset, in each partition's offset order.
func compute(d *dataset) *oracle.Oracle {
	o := oracle.New(lateness)
	for i := range d.spans {
		o.Add(d.part[i], &d.spans[i])
	}
	return o
}

// check compares the store with the oracle over the traffic's hours.
func check(t *testing.T, o *oracle.Oracle, store metricstore.Store) {
	t.Helper()
	diffs, err := o.Diff(context.Background(), store, base.Add(-2*time.Hour), base.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
}

func startBroker(t testing.TB) bus.Config {
	t.Helper()
	b, err := broker.New(context.Background(), broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return bus.Config{Brokers: []string{b.Addr()}}
}

func produce(t testing.TB, cfg bus.Config, msgs []kafka.Message) {
	t.Helper()
	produceTo(t, cfg, bus.TopicSpans, msgs...)
}

func produceTo(t testing.TB, cfg bus.Config, topic string, msgs ...kafka.Message) {
	t.Helper()
	w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: topic, BatchSize: 10000})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	for len(msgs) > 0 {
		n := min(len(msgs), 50000)
		if err := w.WriteMessages(context.Background(), msgs[:n]...); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// caughtUp reports whether group has committed the end of every partition of topic, with
// no phase-1 flush under way.
func caughtUp(t testing.TB, cfg bus.Config, group, topic string) bool {
	t.Helper()
	cl, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	ctx := context.Background()
	n := bus.DefaultPartitions(topic)
	var parts []int
	var reqs []kafka.OffsetRequest
	for p := range n {
		parts = append(parts, p)
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	ends, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return false
	}
	got, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil || got.Error != nil {
		return false
	}
	committed := map[int]kafka.OffsetFetchPartition{}
	for _, p := range got.Topics[topic] {
		committed[p.Partition] = p
	}
	for _, e := range ends.Topics[topic] {
		c := committed[e.Partition]
		if e.LastOffset > 0 && (c.CommittedOffset != e.LastOffset || strings.Contains(c.Metadata, "intent")) {
			return false
		}
	}
	return true
}

// waitCaughtUp polls until both phases committed everything (phase 2 after phase 1, whose
// last flush grows phase 2's input).
func waitCaughtUp(t testing.TB, cfg bus.Config, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !(caughtUp(t, cfg, aggregator.GroupPhase1, bus.TopicSpans) && caughtUp(t, cfg, aggregator.GroupPhase2, bus.TopicMetrics20s)) {
		if time.Now().After(deadline) {
			t.Fatalf("the aggregator did not catch up within %v", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// endOf is the number of records written to topic (all partitions).
func endOf(t testing.TB, cfg bus.Config, topic string) int64 {
	t.Helper()
	cl, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	var reqs []kafka.OffsetRequest
	for p := range bus.DefaultPartitions(topic) {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	resp, err := cl.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, p := range resp.Topics[topic] {
		n += p.LastOffset // nothing is deleted in a test: offsets start at 0
	}
	return n
}

// checkGauges asserts both phases export their state per input partition.
func checkGauges(t testing.TB, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	perPartition := map[string]int{}
	for _, mf := range mfs {
		perPartition[mf.GetName()] = len(mf.GetMetric())
	}
	for name, want := range map[string]int{
		"mercury_aggregator_phase1_lag": 6, "mercury_aggregator_phase2_lag": 6,
		"mercury_aggregator_phase1_open_windows": 6, "mercury_aggregator_phase2_open_points": 6,
		"mercury_aggregator_phase1_series": 6, "mercury_aggregator_phase2_series": 6,
		"mercury_aggregator_phase1_late_spans_total": 1, "mercury_aggregator_phase2_late_upserts_total": 1,
	} {
		if got := perPartition[name]; got != want {
			t.Errorf("%s: %d series exported, want %d", name, got, want)
		}
	}
}

func counter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func phaseConfig(phase int, cfg bus.Config, store metricstore.Store, tel daemon.Telemetry) aggregator.Config {
	return aggregator.Config{Telemetry: tel, Phase: phase, Bus: cfg, Store: store,
		FlushInterval: 500 * time.Millisecond, MaxOpen: 200000, Fold: phase1FoldConfig()}
}

func TestOracle(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	d := generate(n, 1)
	want := compute(d)
	cfg := startBroker(t)
	// Bad input loses nothing and stops nothing: two records that are no span (the
	// collector dead-letters them; phase 1 counts and skips them) and a partial phase 2
	// cannot merge (dead-lettered with its error).
	half := len(d.msgs) / 2
	produce(t, cfg, append(d.msgs[:half:half], kafka.Message{Key: []byte("x"), Value: []byte("not avro")},
		kafka.Message{Key: []byte("y"), Value: []byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}}))
	badPartial, _ := schemas.Marshal(&schemas.MetricPartial{SeriesID: "s", WindowMillis: 7000, SketchSchema: 6, LastOffset: 1})
	produceTo(t, cfg, bus.TopicMetrics20s, kafka.Message{Key: []byte("s"), Value: badPartial})
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{CacheBytes: 32 << 20, MemTableBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tel := daemon.Telemetry{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	ctx, cancel := context.WithCancel(context.Background())
	g := daemon.NewGroup(ctx)
	for phase := 1; phase <= 2; phase++ {
		a, err := aggregator.New(phaseConfig(phase, cfg, store, tel))
		if err != nil {
			t.Fatal(err)
		}
		g.Go(fmt.Sprint("phase ", phase), a.Run)
	}
	// The second half arrives once the first is stored: its late spans re-open stored
	// minutes, which get a new revision.
	waitCaughtUp(t, cfg, 3*time.Minute)
	produce(t, cfg, d.msgs[half:])
	waitCaughtUp(t, cfg, 3*time.Minute)
	checkGauges(t, tel.Registry)
	cancel()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	check(t, want, store)
	if got := counter(t, tel.Registry, "mercury_aggregator_phase2_late_upserts_total"); got == 0 {
		t.Error("no minute was upserted a second time: the late spans did not exercise revisions")
	}
	if got := counter(t, tel.Registry, "mercury_aggregator_phase1_undecodable_total"); got != 2 {
		t.Errorf("%v undecodable spans counted, want 2", got)
	}
	if got := counter(t, tel.Registry, "mercury_aggregator_phase2_bad_partials_total"); got != 1 {
		t.Errorf("%v bad partials counted, want 1", got)
	}
	if n := endOf(t, cfg, bus.TopicDLQ); n != 1 {
		t.Errorf("%d records in %s, want the bad partial", n, bus.TopicDLQ)
	}
	if got := counter(t, tel.Registry, "mercury_aggregator_phase1_too_late_spans_total"); int(got) != want.TooLate || want.TooLate == 0 {
		t.Errorf("too-late counter %v, oracle %d", got, want.TooLate)
	}
	if got := counter(t, tel.Registry, "mercury_aggregator_phase1_spans_total"); int(got) != n {
		t.Errorf("%v spans read, want %d", got, n)
	}
	t.Logf("%d spans, %d points, %d too late, %v partials, %v duplicates", n, want.Points(), want.TooLate,
		counter(t, tel.Registry, "mercury_aggregator_phase1_partials_total"), counter(t, tel.Registry, "mercury_aggregator_phase2_duplicate_partials_total"))
}

func phase1FoldConfig() phase1.Config { return phase1.Config{Lateness: lateness} }

func metricSeriesID(s *schemas.Span) string { return metric.SeriesOf(s).ID() }

// TestPhaseOutlivesTheBroker: the broker dies under a running phase 1 and comes back on its
// data directory; the phase waits (its fetches fail and are retried, counted) instead of
// stopping, and reads on once the broker is back.
func TestPhaseOutlivesTheBroker(t *testing.T) {
	d := generate(2000, 4)
	dir := t.TempDir()
	b, err := broker.New(context.Background(), broker.Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	cfg := bus.Config{Brokers: []string{addr}}
	produce(t, cfg, d.msgs[:1000])
	tel := daemon.Telemetry{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}
	a, err := aggregator.New(phaseConfig(1, cfg, nil, tel))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	caught := func() (bool, string) { return caughtUp(t, cfg, aggregator.GroupPhase1, bus.TopicSpans), "" }
	testproc.Eventually(t, "phase 1 caught up", time.Minute, caught)

	b.Close()
	testproc.Eventually(t, "a failed fetch retried", time.Minute, func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("phase 1 stopped when the broker died: %v", err)
		default:
		}
		return counter(t, tel.Registry, "mercury_aggregator_phase1_retries_total") > 0, ""
	})
	if b, err = broker.New(context.Background(), broker.Config{DataDir: dir, Addr: addr, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	produce(t, cfg, d.msgs[1000:])
	testproc.Eventually(t, "phase 1 caught up after the restart", time.Minute, caught)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
