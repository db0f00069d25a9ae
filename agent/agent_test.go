package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/internal/agenttest"
	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// records closes the agent and returns what it wrote.
func records(t *testing.T, a *agent.Agent) ([]schemas.Span, []schemas.Event, []schemas.Heartbeat) {
	t.Helper()
	spans, events := agenttest.Records(t, a)
	return spans, events, agenttest.Read[schemas.Heartbeat](t, a.SpoolDir(), spool.StreamHeartbeats)
}

func TestSpansReachTheSpool(t *testing.T) {
	a := agenttest.New(t, agent.Config{Service: "order", Domain: "shop", Host: "h1"})
	ctx, root := a.StartSpan(context.Background(), "checkout")
	root.SetBusinessKey("order_id", "12345")
	root.SetTag("password", "hunter2")
	root.SetTag("note", "call 13812345678")
	_, child := a.StartSpan(ctx, "load cart")
	child.SetKind(agent.KindClient)
	child.SetPeer("cart")
	child.RecordError(fmt.Errorf("load: %w", os.ErrDeadlineExceeded))
	child.End()
	child.SetTag("late", "ignored") // after End: inert
	root.End()
	root.End() // twice: harmless
	var nilSpan *agent.Span
	nilSpan.SetTag("a", "b")
	nilSpan.End()

	spans, events, beats := records(t, a)
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	c, r := spans[0], spans[1]
	if r.TraceID != c.TraceID || c.ParentSpanID != r.SpanID || !r.ParentSpanID.IsZero() {
		t.Fatalf("broken tree: root %+v child %+v", r, c)
	}
	if r.Service != "order" || r.Domain != "shop" || r.Host != "h1" || r.AgentVersion != agent.Version {
		t.Fatalf("process fields: %+v", r)
	}
	if v, _ := schemas.Get(r.BusinessKeys, "order_id"); v != "12345" {
		t.Fatalf("business key: %+v", r.BusinessKeys)
	}
	if v, _ := schemas.Get(r.Tags, "password"); v != "***" {
		t.Fatalf("password not masked: %q", v)
	}
	if v, _ := schemas.Get(r.Tags, "note"); v != "call 138****5678" {
		t.Fatalf("phone not masked: %q", v)
	}
	if _, late := schemas.Get(c.Tags, "late"); late {
		t.Fatal("tag set after End was recorded")
	}
	if c.Status != schemas.StatusError || c.ErrorType != "*poll.DeadlineExceededError" || c.Kind != schemas.KindClient || c.Peer != "cart" {
		t.Fatalf("child: %+v", c)
	}
	if len(events) != 1 || events[0].Type != schemas.EventException || events[0].TraceID != c.TraceID || events[0].Stack == "" {
		t.Fatalf("events: %+v", events)
	}
	if len(beats) < 2 || beats[0].Service != "order" || beats[0].PID != int32(os.Getpid()) {
		t.Fatalf("heartbeats: %+v", beats)
	}
	if last := beats[len(beats)-1]; last.Stats["spans_written"] != 2 {
		t.Fatalf("final heartbeat stats: %v", last.Stats)
	}
}

func TestSamplingFollowsTheRoot(t *testing.T) {
	a := agenttest.New(t, agent.Config{SampleRate: 1e-9})
	for i := 0; i < 200; i++ {
		ctx, s := a.StartSpan(context.Background(), "unsampled")
		if s.Sampled() {
			t.Fatal("rate 1e-9 sampled a trace")
		}
		// Not sampled, yet propagated and still an error source: events are never sampled.
		if sc, ok := agent.SpanContextFrom(ctx); !ok || !sc.IsValid() || sc.Sampled {
			t.Fatalf("unsampled context: %+v", sc)
		}
		s.RecordError(errors.New("boom"))
		s.End()
	}
	// A sampled parent from upstream is followed whatever the local rate.
	parent := agent.SpanContext{TraceID: schemas.TraceID{1}, SpanID: schemas.SpanID{2}, Sampled: true, SampleRate: 0.5, OriginDomain: "edge"}
	_, s := a.StartSpan(agent.ContextWithRemote(context.Background(), parent), "followed")
	if !s.Sampled() || s.Context().TraceID != parent.TraceID {
		t.Fatal("downstream did not follow the upstream decision")
	}
	s.End()
	spans, events, _ := records(t, a)
	if len(spans) != 1 || spans[0].SampleRate != 0.5 || spans[0].ParentSpanID != parent.SpanID {
		t.Fatalf("spans: %+v", spans)
	}
	if len(events) != 200 {
		t.Fatalf("%d exception events, want 200", len(events))
	}
}

func TestDomainOverride(t *testing.T) {
	a := agenttest.New(t, agent.Config{Domain: "pay", SampleRate: 1e-9, OverrideDomainSampling: true})
	sampledUpstream := agent.SpanContext{TraceID: schemas.TraceID{1}, SpanID: schemas.SpanID{2}, Sampled: true, SampleRate: 1, OriginDomain: "shop"}
	_, s := a.StartSpan(agent.ContextWithRemote(context.Background(), sampledUpstream), "x")
	if s.Sampled() || s.Context().OriginDomain != "pay" {
		t.Fatalf("override ignored: %+v", s.Context())
	}
	sameDomain := sampledUpstream
	sameDomain.OriginDomain = "pay"
	_, s = a.StartSpan(agent.ContextWithRemote(context.Background(), sameDomain), "y")
	if !s.Sampled() {
		t.Fatal("a decision taken in our own domain must be followed")
	}
}

// TestRemoteGovernance: the domain override and the per-category switches (cache, rpc, mq
// beside http, sql and custom) are set remotely and take effect at once.
func TestRemoteGovernance(t *testing.T) {
	a := agenttest.New(t, agent.Config{Domain: "pay", SampleRate: 1e-9})
	upstream := agent.SpanContext{TraceID: schemas.TraceID{1}, SpanID: schemas.SpanID{2}, Sampled: true, SampleRate: 1, OriginDomain: "shop"}
	ctx := agent.ContextWithRemote(context.Background(), upstream)
	if _, s := a.StartSpan(ctx, "x"); !s.Sampled() {
		t.Fatal("without the override the upstream decision is followed")
	}
	on, off := true, false
	if err := a.Apply(agent.RemoteConfig{Version: "2", OverrideDomainSampling: &on, Switches: map[string]bool{agent.CategoryMQ: false, agent.CategoryRPC: true}}); err != nil {
		t.Fatal(err)
	}
	if _, s := a.StartSpan(ctx, "x"); s.Sampled() {
		t.Fatal("the remote domain override was ignored")
	}
	if _, s := a.Start(context.Background(), "publish", agent.KindProducer, agent.CategoryMQ); s != nil {
		t.Fatal("an mq span was started with mq switched off")
	}
	for _, cat := range []string{agent.CategoryRPC, agent.CategoryCache} {
		if _, s := a.Start(context.Background(), "call", agent.KindClient, cat); s == nil {
			t.Fatalf("a %s span was refused", cat)
		}
	}
	if err := a.Apply(agent.RemoteConfig{Version: "3", OverrideDomainSampling: &off}); err != nil {
		t.Fatal(err)
	}
	if _, s := a.StartSpan(ctx, "x"); !s.Sampled() {
		t.Fatal("switching the override off remotely did not restore following")
	}
}

// stallingFile blocks every write until released: a hung disk.
type stallingFile struct {
	spool.File
	release <-chan struct{}
	stalled *sync.Once
	started chan<- struct{}
}

func (f stallingFile) Write(p []byte) (int, error) {
	f.stalled.Do(func() { close(f.started) })
	<-f.release
	return f.File.Write(p)
}

func TestStalledDiskNeverBlocksTheCaller(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a, err := agent.New(agent.Config{SpoolDir: t.TempDir(), QueueSize: 100, HeartbeatInterval: time.Hour,
		SpoolOpenFile: func(path string) (spool.File, error) {
			f, err := spool.CreateSegmentFile(path)
			return stallingFile{f, release, &once, started}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	<-started // the writer is now stuck in a write (its first heartbeat)
	const n = 10000
	for i := 0; i < n; i++ {
		_, s := a.StartSpan(context.Background(), "op")
		s.End()
	}
	// All n calls returned while the disk is still stalled; the overflow is counted.
	st := a.Stats()
	if st.Dropped[agent.DropQueueFull] < n-100 {
		t.Fatalf("dropped %d, want ≥ %d", st.Dropped[agent.DropQueueFull], n-100)
	}
	close(release)
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.SpansWritten+st.Dropped[agent.DropQueueFull] != n {
		t.Fatalf("written %d + dropped %d != %d", st.SpansWritten, st.Dropped[agent.DropQueueFull], n)
	}
}

type failingFile struct{ spool.File }

func (failingFile) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

func TestFullDiskDropsAndCounts(t *testing.T) {
	var logged atomic.Int32
	a, err := agent.New(agent.Config{SpoolDir: t.TempDir(), Logger: logFunc(func(string, ...any) { logged.Add(1) }),
		SpoolOpenFile: func(path string) (spool.File, error) {
			f, err := spool.CreateSegmentFile(path)
			return failingFile{f}, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		_, s := a.StartSpan(context.Background(), "op")
		s.End()
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Dropped[agent.DropDisk] != 50 || st.SpansWritten != 0 {
		t.Fatalf("stats %+v", st)
	}
	if logged.Load() == 0 {
		t.Fatal("a failing disk was not logged")
	}
	a.Close(context.Background())
}

type logFunc func(string, ...any)

func (f logFunc) Printf(format string, args ...any) { f(format, args...) }

func TestDynamicConfigFromURL(t *testing.T) {
	var body atomic.Value
	body.Store(`{"version":"v1","sample_rate":1,"switches":{"sql":false}}`)
	var notModified, served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := body.Load().(string)
		served.Add(1)
		etag := fmt.Sprintf(`"%x"`, len(b))
		if r.URL.Query().Get("service") != "order" {
			http.Error(w, "no service", http.StatusBadRequest)
			return
		}
		if r.Header.Get("If-None-Match") == etag {
			notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Write([]byte(b))
	}))
	defer srv.Close()
	a := agenttest.New(t, agent.Config{ConfigURL: srv.URL, ConfigPoll: 5 * time.Millisecond})
	waitFor(t, func() bool { return a.Stats().ConfigVersion == "v1" && notModified.Load() > 0 })
	if _, s := a.Start(context.Background(), "SELECT", agent.KindClient, agent.CategorySQL); s != nil {
		t.Fatal("sql switched off, yet a span started")
	}
	if _, s := a.Start(context.Background(), "GET /", agent.KindServer, agent.CategoryHTTP); s == nil {
		t.Fatal("http is on")
	}
	body.Store(`{"version":"v2-kill","kill":true}`)
	waitFor(t, func() bool { return a.Stats().ConfigVersion == "v2-kill" })
	if _, s := a.StartSpan(context.Background(), "x"); s != nil {
		t.Fatal("kill switch ignored")
	}
	body.Store(`{"version":"v3","sample_rate":7}`) // invalid: the last good config stays
	seen := served.Load()
	waitFor(t, func() bool { return served.Load() > seen+2 })
	if v := a.Stats().ConfigVersion; v != "v2-kill" {
		t.Fatalf("invalid config applied: %s", v)
	}
}

func TestDynamicConfigFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.json")
	os.WriteFile(path, []byte(`{"version":"f1","sample_rate":0}`), 0o644)
	a := agenttest.New(t, agent.Config{ConfigFile: path, ConfigPoll: 5 * time.Millisecond})
	waitFor(t, func() bool { return a.Stats().ConfigVersion == "f1" })
	if _, s := a.StartSpan(context.Background(), "x"); s.Sampled() {
		t.Fatal("sample_rate 0 from the file was not applied")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestWithDyeMarksNewRootsOnly(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	ctx, root := a.StartSpan(agent.WithDye(context.Background()), "dyed root")
	if !root.Context().Dyed {
		t.Fatal("root started under WithDye is not dyed")
	}
	_, child := a.StartSpan(ctx, "child")
	if !child.Context().Dyed {
		t.Fatal("child of a dyed root lost the mark")
	}
	// A parent from upstream decides: the local dye flag does not repaint its trace.
	parent := agent.SpanContext{TraceID: schemas.TraceID{1}, SpanID: schemas.SpanID{2}, Sampled: true, SampleRate: 1}
	_, cont := a.StartSpan(agent.WithDye(agent.ContextWithRemote(context.Background(), parent)), "continued")
	if cont.Context().Dyed {
		t.Fatal("WithDye repainted a continued trace")
	}
	_, plain := a.StartSpan(context.Background(), "plain")
	for _, s := range []*agent.Span{child, cont, plain, root} {
		s.End()
	}
	spans, _, _ := records(t, a)
	dyed := map[string]bool{}
	for _, s := range spans {
		dyed[s.Operation] = s.Dyed
	}
	if !dyed["dyed root"] || !dyed["child"] || dyed["continued"] || dyed["plain"] {
		t.Fatalf("dyed marks on disk: %v", dyed)
	}
}

func TestDiscardRecordsNothing(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	_, s := a.StartSpan(context.Background(), "skipped")
	s.Discard()
	var nilSpan *agent.Span
	nilSpan.Discard()
	_, kept := a.StartSpan(context.Background(), "kept") // reuses the discarded span's record
	s.SetTag("late", "x")                                // inert, like after End
	s.End()
	s.Discard()
	kept.End()
	spans, _, _ := records(t, a)
	if len(spans) != 1 || spans[0].Operation != "kept" || len(spans[0].Tags) != 0 {
		t.Fatalf("spans: %+v", spans)
	}
}

// Kinds and statuses outside the schema would make the Avro record unreadable: they are
// ignored, and the span is written with the last valid ones.
func TestInvalidKindAndStatusAreIgnored(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	_, s := a.Start(context.Background(), "odd", schemas.SpanKind(200), agent.CategoryCustom)
	s.SetStatus(schemas.StatusOK, 200)
	s.SetKind(schemas.SpanKind(9))
	s.SetStatus(schemas.Status(7), 500)
	s.End()
	spans, _, _ := records(t, a)
	if len(spans) != 1 || spans[0].Kind != agent.KindInternal || spans[0].Status != schemas.StatusOK || spans[0].StatusCode != 200 {
		t.Fatalf("spans: %+v", spans)
	}
}

func TestStartTimeAndDuration(t *testing.T) {
	a := agenttest.New(t, agent.Config{FlushInterval: time.Millisecond})
	before := time.Now().UnixNano()
	_, s := a.StartSpan(context.Background(), "timed")
	time.Sleep(5 * time.Millisecond) // the writer renews its clock base meanwhile
	s.End()
	after := time.Now().UnixNano()
	spans, _, _ := records(t, a)
	sp := spans[0]
	if sp.StartUnixNano < before || sp.StartUnixNano > after {
		t.Fatalf("start %d outside [%d, %d]", sp.StartUnixNano, before, after)
	}
	if sp.DurationNano < int64(5*time.Millisecond) || sp.StartUnixNano+sp.DurationNano > after {
		t.Fatalf("duration %v", time.Duration(sp.DurationNano))
	}
}

func TestReportStatsReachHeartbeats(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	a.ReportStats(func() map[string]int64 { return map[string]int64{"shipper_records": 42} })
	_, _, beats := records(t, a)
	if last := beats[len(beats)-1]; last.Stats["shipper_records"] != 42 || last.Stats["spans_written"] != 0 {
		t.Fatalf("heartbeat stats: %v", last.Stats)
	}
}

func TestErrorClass(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{errors.New("x"), "error"},
		{fmt.Errorf("load: %w", os.ErrDeadlineExceeded), "*poll.DeadlineExceededError"},
		{errors.Join(os.ErrDeadlineExceeded, errors.New("y")), "*poll.DeadlineExceededError"},
		{fmt.Errorf("a: %w, b: %w", &os.PathError{Op: "open", Err: os.ErrDeadlineExceeded}, errors.New("z")), "*poll.DeadlineExceededError"},
	}
	for _, c := range cases {
		if got := agent.ErrorClass(c.err); got != c.want {
			t.Errorf("ErrorClass(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// Concurrent Ends hand the record over once: it is written once and recycled once.
func TestConcurrentEnd(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	for i := 0; i < 200; i++ {
		_, s := a.StartSpan(context.Background(), "op")
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() { defer wg.Done(); s.End() }()
		}
		wg.Wait()
	}
	spans, _, _ := records(t, a)
	if len(spans) != 200 {
		t.Fatalf("%d spans written, want 200", len(spans))
	}
}

// Spans ended while the agent closes are written or counted, never stranded; Flush around
// Close returns.
func TestEndDuringClose(t *testing.T) {
	for round := 0; round < 20; round++ {
		a, err := agent.New(agent.Config{SpoolDir: t.TempDir(), Service: "order"})
		if err != nil {
			t.Fatal(err)
		}
		const n = 2000
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				_, s := a.StartSpan(context.Background(), "op")
				s.End()
			}
		}()
		go func() { defer wg.Done(); a.Flush(context.Background()) }()
		a.Close(context.Background())
		wg.Wait()
		if err := a.Flush(context.Background()); err == nil {
			t.Fatal("Flush after Close succeeded")
		}
		st := a.Stats()
		if got := st.SpansWritten + st.Dropped[agent.DropClosed] + st.Dropped[agent.DropQueueFull]; got != n || st.Queued != 0 {
			t.Fatalf("round %d: written %d + dropped %v = %d, want %d (queued %d)", round, st.SpansWritten, st.Dropped, got, n, st.Queued)
		}
	}
}

// The writer is woken only once a batch is waiting (an eighth of this small queue; waking it
// per span cost the caller more than the span); below that its flush tick drains the queue,
// and Flush and Close always do.
func TestWriterWakesAtAThreshold(t *testing.T) {
	end := func(a *agent.Agent, n int) {
		for range n {
			_, s := a.StartSpan(context.Background(), "op")
			s.End()
		}
	}
	a, err := agent.New(agent.Config{SpoolDir: t.TempDir(), QueueSize: 80, FlushInterval: time.Hour, HeartbeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	end(a, 9)
	time.Sleep(20 * time.Millisecond)
	if st := a.Stats(); st.Queued != 9 || st.SpansWritten != 0 {
		t.Fatalf("below the threshold: queued %d, written %d; want 9 and 0", st.Queued, st.SpansWritten)
	}
	end(a, 1) // the tenth of 80
	waitFor(t, func() bool { return a.Stats().SpansWritten == 10 })
	end(a, 1)
	if err := a.Flush(context.Background()); err != nil || a.Stats().SpansWritten != 11 {
		t.Fatalf("Flush: %v, written %d", err, a.Stats().SpansWritten)
	}

	ticking, err := agent.New(agent.Config{SpoolDir: t.TempDir(), FlushInterval: 5 * time.Millisecond, HeartbeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer ticking.Close(context.Background())
	end(ticking, 1)
	waitFor(t, func() bool { return ticking.Stats().SpansWritten == 1 })
}
