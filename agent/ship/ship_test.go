package ship

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/schemas"
)

func startBroker(t testing.TB, dir, addr string) *broker.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := broker.New(ctx, broker.Config{DataDir: dir, Addr: addr, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.Default()
	}
	return slog.New(slog.DiscardHandler)
}

// running is a shipper run in the background; stop cancels it without a flush (a kill).
type running struct {
	s    *Shipper
	stop func() error
}

func startShipper(t testing.TB, cfg Config, setup ...func(*Shipper)) running {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var err2 error
	stop := func() error {
		once.Do(func() { cancel(); err2 = <-done })
		return err2
	}
	t.Cleanup(func() { stop() })
	return running{s, stop}
}

// holdCursorAt freezes each stream's committer once it has committed n records or more, as
// if the process hung there: the reader and sender go on until their buffers fill, nothing
// more is committed. reached is closed when the first stream stops.
func holdCursorAt(n int64) (hold func(*Shipper), reached <-chan struct{}) {
	ch := make(chan struct{})
	var once sync.Once
	return func(s *Shipper) {
		for _, st := range s.streams {
			st.afterCommit = func(ctx context.Context, committed int64) {
				if committed >= n {
					once.Do(func() { close(ch) })
					<-ctx.Done()
				}
			}
		}
	}, ch
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// spanConsumer reads mercury.spans as a consumer group, checking each message.
type spanConsumer struct {
	t     testing.TB
	r     *kafka.Reader
	seen  map[schemas.SpanID]int
	total int
}

func newSpanConsumer(t testing.TB, addr, group string) *spanConsumer {
	r, err := bus.NewReader(bus.Config{Brokers: []string{addr}}, bus.ReaderConfig{Topic: bus.TopicSpans, GroupID: group})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &spanConsumer{t: t, r: r, seen: map[schemas.SpanID]int{}}
}

func (c *spanConsumer) readUntil(d time.Duration, want map[schemas.SpanID]bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !c.hasAll(want) {
		m, err := c.r.FetchMessage(ctx)
		if err != nil {
			c.t.Fatalf("fetch: %v (have %d of %d)", err, len(c.seen), len(want))
		}
		var s schemas.Span
		if err := schemas.Unmarshal(m.Value, &s); err != nil {
			c.t.Fatalf("offset %d: %v", m.Offset, err)
		}
		if string(m.Key) != hex.EncodeToString(s.TraceID[:]) {
			c.t.Fatalf("key %q for trace %s", m.Key, s.TraceID)
		}
		c.seen[s.SpanID]++
		c.total++
		if err := c.r.CommitMessages(ctx, m); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *spanConsumer) hasAll(want map[schemas.SpanID]bool) bool {
	if len(c.seen) < len(want) {
		return false
	}
	for id := range want {
		if c.seen[id] == 0 {
			return false
		}
	}
	return true
}

func TestShipThroughKillBrokerRestartAndRotation(t *testing.T) {
	spoolDir, data := t.TempDir(), t.TempDir()
	b := startBroker(t, data, "")
	addr := b.Addr()
	defer func() { b.Close() }()

	// The agent's own spool writer: 4 KiB blocks, segments rotated past 20 KiB, so a 250-record
	// batch spans several segments and rotation happens mid-batch.
	sp, err := spool.Open(spool.Config{Dir: spoolDir, BlockBytes: 4 << 10, SegmentBytes: 20 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	w := sp.Writer(spool.StreamSpans)
	gen := newSpanGen(42)
	want := map[schemas.SpanID]bool{}
	// write n blocks' worth of spans (per each) and flush the partial block at the end.
	write := func(n, per int) {
		for range n {
			bodies, ids := gen.bodies(per)
			for i, body := range bodies {
				if _, err := w.Append(body); err != nil {
					t.Fatal(err)
				}
				want[ids[i]] = true
			}
		}
		if _, err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{
		Spool: spoolDir, Bus: bus.Config{Brokers: []string{addr}}, Streams: []string{StreamSpans},
		BatchRecords: 250, Linger: time.Millisecond, Poll: 5 * time.Millisecond,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 300 * time.Millisecond, SendTimeout: 2 * time.Second,
		Logger: quietLog(),
	}

	// (a) a shipper is killed mid-stream and a new one resumes from the cursor. Its cursor is
	// held at the first batch that reaches 600 records, and it is killed once later batches are
	// in flight: the kill point is the test's, not a race with the shipper's speed.
	write(40, 60)
	hold, held := holdCursorAt(600)
	s1 := startShipper(t, cfg, hold)
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatalf("first shipper committed only %d records", s1.s.Stats().Records)
	}
	waitFor(t, 60*time.Second, "a batch in flight behind the held cursor", func() bool { return s1.s.streams[0].inflight.Load() > 0 })
	if err := s1.stop(); err != nil {
		t.Fatal(err)
	}
	st1 := s1.s.Stats()
	if st1.Records < 600 || st1.Records >= int64(len(want)) {
		t.Fatalf("first shipper committed %d of %d records; the hold is at 600", st1.Records, len(want))
	}
	t.Logf("killed the first shipper after %d of %d records (possible duplicates %d)", st1.Records, len(want), st1.PossibleDuplicates)
	write(20, 60)
	s2 := startShipper(t, cfg)
	waitFor(t, 60*time.Second, "second shipper to catch up", func() bool {
		st := s2.s.Stats()
		return st.Records > 0 && st.LagRecords == 0 && st.LagBytes == 0
	})
	if d := s2.s.Stats().PossibleDuplicates; d == 0 {
		t.Fatal("the second shipper counted no possible duplicates for the batches in flight at the kill")
	}

	// (b) the broker goes away for a while; the spool keeps growing; the broker restarts on
	// the same data directory and the shipper catches up from disk.
	b.Close()
	down := time.Now()
	write(30, 60)
	errsBefore := s2.s.Stats().SendErrors
	waitFor(t, 60*time.Second, "3 s of downtime with send errors and lag", func() bool {
		st := s2.s.Stats()
		return time.Since(down) > 3*time.Second && st.SendErrors >= errsBefore+3 && st.LagRecords > 0 && st.CursorAge > time.Second
	})
	b = startBroker(t, data, addr)
	write(10, 60)
	waitFor(t, 90*time.Second, "catch-up after the broker restart", func() bool {
		st := s2.s.Stats()
		return st.LagRecords == 0 && st.LagBytes == 0
	})

	c := newSpanConsumer(t, addr, "test-spans")
	c.readUntil(90*time.Second, want)
	if err := s2.stop(); err != nil {
		t.Fatal(err)
	}
	st2 := s2.s.Stats()
	dups := c.total - len(c.seen)
	possible := st1.PossibleDuplicates + st2.PossibleDuplicates
	t.Logf("spans %d, received %d, duplicates %d, counted possible %d, send errors %d", len(want), c.total, dups, possible, st2.SendErrors)
	if len(c.seen) != len(want) {
		t.Fatalf("received %d distinct spans, wrote %d", len(c.seen), len(want))
	}
	if int64(dups) > possible {
		t.Fatalf("%d duplicates but only %d counted as possible", dups, possible)
	}
	if shipped := st1.Records + st2.Records; shipped < int64(len(want)) {
		t.Fatalf("stats say %d shipped, want ≥ %d", shipped, len(want))
	}
	// Sealed segments are gone once shipped; the active one stays.
	if segs, _ := spool.ListSegments(spoolDir, StreamSpans); len(segs) != 1 {
		t.Fatalf("segments left: %+v", segs)
	}
	if st1.Records+st2.Records < 300 || st1.Segments+st2.Segments == 0 {
		t.Fatalf("implausible stats %+v %+v", st1, st2)
	}
}

func TestCorruptSegmentsAreSkipped(t *testing.T) {
	spoolDir := t.TempDir()
	b := startBroker(t, "", "")
	defer b.Close()
	w := newSpoolWriter(t, spoolDir, StreamSpans, schemas.NameSpan)
	defer w.close()
	gen := newSpanGen(7)
	want := map[schemas.SpanID]bool{}
	good := func() {
		w.rotate()
		expect(want, gen.block(w, 50))
	}
	raw := func(content []byte) {
		w.close()
		w.seq++
		if err := os.WriteFile(w.path(w.seq), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	header := schemas.AppendOCFHeader(nil, w.schema, w.sync)
	bodies, _ := gen.bodies(10)
	var blk []byte
	for _, b := range bodies {
		blk = append(blk, b...)
	}
	fullBlock := schemas.AppendOCFBlock(nil, len(bodies), blk, w.sync)

	good()
	raw([]byte("this is not an avro container file at all")) // garbage
	good()
	raw(header[:len(header)/2]) // truncated header
	good()
	raw(append(append([]byte{}, header...), fullBlock[:len(fullBlock)-9]...)) // torn block in a sealed segment
	good()
	badSync := append(append([]byte{}, header...), fullBlock...)
	badSync[len(badSync)-1] ^= 0xff
	raw(badSync) // bad sync marker
	good()
	garbageBlock := schemas.AppendOCFBlock(nil, 3, []byte{0xff, 0xff, 0xff, 0xff}, w.sync)
	raw(append(append([]byte{}, header...), garbageBlock...)) // block whose records do not parse
	good()

	c := newSpanConsumer(t, b.Addr(), "test-corrupt")
	sh := startShipper(t, Config{Spool: spoolDir, Bus: bus.Config{Brokers: []string{b.Addr()}}, Streams: []string{StreamSpans}, Poll: 5 * time.Millisecond, Logger: quietLog()})
	c.readUntil(20*time.Second, want)
	// The first two are skipped whole; the other three lose their one block each (10, 10 and 3
	// records by their headers).
	wantSkipped := StreamStats{SkippedSegments: 2, SkippedBlocks: 3, SkippedRecords: 23,
		SkippedBytes: int64(len(fullBlock) - 9 + len(fullBlock) + len(garbageBlock))}
	skipped := func() StreamStats {
		st := sh.s.Stats().StreamStats
		return StreamStats{SkippedSegments: st.SkippedSegments, SkippedBlocks: st.SkippedBlocks, SkippedRecords: st.SkippedRecords, SkippedBytes: st.SkippedBytes}
	}
	waitFor(t, 10*time.Second, "the skip counters", func() bool { return skipped() == wantSkipped })
	if len(c.seen) != len(want) {
		t.Fatalf("got %d spans, want %d", len(c.seen), len(want))
	}
}

func TestVanishedSegmentIsSkipped(t *testing.T) {
	spoolDir := t.TempDir()
	b := startBroker(t, "", "")
	defer b.Close()
	w := newSpoolWriter(t, spoolDir, StreamSpans, schemas.NameSpan)
	defer w.close()
	gen := newSpanGen(9)
	want := map[schemas.SpanID]bool{} // segments 3 and 4
	for seq := 1; seq <= 4; seq++ {
		w.rotate()
		if ids := gen.block(w, 20); seq >= 3 {
			expect(want, ids)
		}
	}
	// A previous run shipped segment 1 and part of segment 2; then the agent's disk budget
	// removed segment 2.
	cdir := filepath.Join(spoolDir, ".ship")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := saveCursor(cdir, StreamSpans, cursor{Seq: 2, Off: 100}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(w.path(2)); err != nil {
		t.Fatal(err)
	}
	c := newSpanConsumer(t, b.Addr(), "test-vanished")
	sh := startShipper(t, Config{Spool: spoolDir, Bus: bus.Config{Brokers: []string{b.Addr()}}, Streams: []string{StreamSpans}, Poll: 5 * time.Millisecond, Logger: quietLog()})
	c.readUntil(20*time.Second, want)
	waitFor(t, 10*time.Second, "a skipped segment", func() bool { return sh.s.Stats().SkippedSegments == 1 })
	if _, err := os.Stat(w.path(1)); !os.IsNotExist(err) {
		t.Fatalf("segment 1, behind the cursor, should have been cleaned up: %v", err)
	}
	for id := range c.seen {
		if !want[id] {
			t.Fatalf("span %x from before the cursor was shipped", id)
		}
	}
}

// TestSegmentDeletedWhileBehind: the broker is unreachable, the shipper has listed segments it
// has not opened yet, the agent's disk budget deletes two of them; once the broker is back the
// two are counted as skipped and the rest arrives.
func TestSegmentDeletedWhileBehind(t *testing.T) {
	spoolDir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here until the broker starts

	w := newSpoolWriter(t, spoolDir, StreamSpans, schemas.NameSpan)
	gen := newSpanGen(11)
	want := map[schemas.SpanID]bool{}
	for seq := 1; seq <= 6; seq++ {
		w.rotate()
		if ids := gen.block(w, 20); seq != 3 && seq != 4 {
			expect(want, ids)
		}
	}
	w.close()
	sh := startShipper(t, Config{Spool: spoolDir, Bus: bus.Config{Brokers: []string{addr}}, Streams: []string{StreamSpans},
		BatchRecords: 20, InFlight: 1, Poll: 5 * time.Millisecond, BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Logger: quietLog()})
	waitFor(t, 10*time.Second, "the shipper to fail against the missing broker", func() bool { return sh.s.Stats().SendErrors >= 2 })
	for _, seq := range []uint64{3, 4} {
		if err := os.Remove(w.path(seq)); err != nil {
			t.Fatal(err)
		}
	}
	b := startBroker(t, "", addr)
	defer b.Close()
	c := newSpanConsumer(t, addr, "test-behind")
	c.readUntil(20*time.Second, want)
	waitFor(t, 10*time.Second, "two skipped segments", func() bool { return sh.s.Stats().SkippedSegments == 2 })
	if len(c.seen) != len(want) {
		t.Fatalf("got %d spans, want %d", len(c.seen), len(want))
	}
}

// TestActiveSegmentTornTailIsWaitedFor: a block still being written at the end of the active
// segment is neither shipped nor skipped; once complete it ships, and nothing is counted as
// skipped.
func TestActiveSegmentTornTailIsWaitedFor(t *testing.T) {
	spoolDir := t.TempDir()
	b := startBroker(t, "", "")
	defer b.Close()
	w := newSpoolWriter(t, spoolDir, StreamSpans, schemas.NameSpan)
	defer w.close()
	gen := newSpanGen(13)
	want := map[schemas.SpanID]bool{}
	expect(want, gen.block(w, 30))
	second, ids2 := gen.bodies(30)
	var data []byte
	for _, body := range second {
		data = append(data, body...)
	}
	blk := schemas.AppendOCFBlock(nil, len(second), data, w.sync)
	w.write(blk[:len(blk)/2]) // the agent is in the middle of this write

	sh := startShipper(t, Config{Spool: spoolDir, Bus: bus.Config{Brokers: []string{b.Addr()}}, Streams: []string{StreamSpans}, Poll: 5 * time.Millisecond, Logger: quietLog()})
	waitFor(t, 10*time.Second, "the complete block shipped", func() bool { return sh.s.Stats().Records == 30 })
	// Let the reader come back to the torn tail a few times; it must keep waiting, not skip.
	polls := sh.s.streams[0].polls.Load()
	waitFor(t, 5*time.Second, "5 more poll rounds", func() bool { return sh.s.streams[0].polls.Load() >= polls+5 })
	if st := sh.s.Stats(); st.SkippedSegments != 0 || st.Records != 30 {
		t.Fatalf("torn active tail: %+v", st)
	}
	w.write(blk[len(blk)/2:])
	expect(want, ids2)
	w.rotate() // seal it with a new segment holding one more block
	expect(want, gen.block(w, 10))
	c := newSpanConsumer(t, b.Addr(), "test-torn-active")
	c.readUntil(20*time.Second, want)
	if st := sh.s.Stats(); st.SkippedSegments != 0 {
		t.Fatalf("skipped %d segments", st.SkippedSegments)
	}
}

// A segment the shipper lists while it is still empty (created, header not yet written) and
// opens after the header landed is read, not skipped as shorter than its header. This race
// once stopped the heartbeats stream: the agent writes its first heartbeat as the shipper
// starts.
func TestSegmentListedBeforeItsHeaderIsRead(t *testing.T) {
	spoolDir := t.TempDir()
	b := startBroker(t, "", "")
	defer b.Close()
	w := newSpoolWriter(t, spoolDir, StreamSpans, schemas.NameSpan)
	defer w.close()
	sh := startShipper(t, Config{Spool: spoolDir, Bus: bus.Config{Brokers: []string{b.Addr()}}, Streams: []string{StreamSpans}, Poll: time.Millisecond, Logger: quietLog()})
	gen := newSpanGen(17)
	want := map[schemas.SpanID]bool{}
	// Each new segment stays empty while the caught-up shipper polls it; the header lands at
	// a random moment, sometimes between the shipper's listing and its open.
	r := rand.New(rand.NewPCG(17, 1))
	for range 150 {
		w.create()
		time.Sleep(time.Duration(r.IntN(1500)) * time.Microsecond)
		w.header()
		expect(want, gen.block(w, 1))
	}
	w.rotate() // seal the last one
	c := newSpanConsumer(t, b.Addr(), "test-empty-listed")
	c.readUntil(20*time.Second, want)
	if st := sh.s.Stats(); st.SkippedSegments != 0 {
		t.Fatalf("skipped %d segments", st.SkippedSegments)
	}
}

// TestDamagedBlocksAreSteppedOver: a large sealed segment damaged in a block header, in the
// data, in a sync marker, across a block boundary and in its last block, then an active
// segment damaged in the middle and ending in a block still being written. Everything outside
// the damaged blocks arrives exactly once, the counters say what was lost, the unfinished
// block is waited for, and a shipper restarted after the resync neither re-ships nor loses.
func TestDamagedBlocksAreSteppedOver(t *testing.T) {
	spoolDir := t.TempDir()
	b := startBroker(t, "", "")
	defer b.Close()
	w := newSpoolWriter(t, spoolDir, StreamSpans, schemas.NameSpan)
	defer w.close()
	gen := newSpanGen(19)
	type written struct {
		path     string
		off, end int64
		ids      []schemas.SpanID
	}
	size := func() int64 {
		fi, err := w.f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var blocks []written
	add := func(n int) {
		off := size()
		ids := gen.block(w, n)
		blocks = append(blocks, written{w.path(w.seq), off, size(), ids})
	}
	w.rotate()
	for range 200 {
		add(100) // 20,000 spans in one segment
	}
	w.rotate()
	for range 20 {
		add(100)
	}
	second, ids := gen.bodies(100) // the agent is in the middle of writing this one
	var data []byte
	for _, body := range second {
		data = append(data, body...)
	}
	tail := schemas.AppendOCFBlock(nil, len(second), data, w.sync)
	tornAt := size()
	w.write(tail[:len(tail)/2])

	// Overwrite with fill, or flip the bits when fill is 0.
	damage := func(blk int, at, n int64, fill byte) {
		f, err := os.OpenFile(blocks[blk].path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, at); err != nil {
			t.Fatal(err)
		}
		for i := range buf {
			if fill == 0 {
				buf[i] ^= 0xff
			} else {
				buf[i] = fill
			}
		}
		if _, err := f.WriteAt(buf, at); err != nil {
			t.Fatal(err)
		}
	}
	mid := func(i int) int64 { return (blocks[i].off + blocks[i].end) / 2 }
	damage(10, blocks[10].off, 12, 0xff)      // block header
	damage(50, mid(50), 100, 0)               // data
	damage(90, blocks[90].end-12, 6, 0)       // sync marker
	damage(130, blocks[130].end-40, 50, 0xff) // across into block 131's header
	damage(199, mid(199), 100, 0)             // last block of the sealed segment
	damage(205, mid(205), 100, 0)             // middle of the active segment
	lost := map[int]bool{10: true, 50: true, 90: true, 130: true, 131: true, 199: true, 205: true}
	var wantSkipped StreamStats
	want := map[schemas.SpanID]bool{}
	for i, blk := range blocks {
		if !lost[i] {
			expect(want, blk.ids)
			continue
		}
		wantSkipped.SkippedBlocks++
		wantSkipped.SkippedBytes += blk.end - blk.off
		if i != 10 && i != 131 { // their headers are destroyed
			wantSkipped.SkippedRecords += int64(len(blk.ids))
		}
	}
	skipped := func(s *Shipper) StreamStats {
		st := s.Stats().StreamStats
		return StreamStats{SkippedSegments: st.SkippedSegments, SkippedBlocks: st.SkippedBlocks, SkippedBytes: st.SkippedBytes, SkippedRecords: st.SkippedRecords}
	}

	cfg := Config{Spool: spoolDir, Bus: bus.Config{Brokers: []string{b.Addr()}}, Streams: []string{StreamSpans}, Poll: 5 * time.Millisecond, Logger: quietLog()}
	sh := startShipper(t, cfg)
	c := newSpanConsumer(t, b.Addr(), "test-damaged")
	c.readUntil(30*time.Second, want)
	waitFor(t, 10*time.Second, "all but the damaged blocks committed", func() bool { return sh.s.Stats().Records == int64(len(want)) })
	// The unfinished block is polled a few more times, and neither shipped nor counted.
	polls := sh.s.streams[0].polls.Load()
	waitFor(t, 10*time.Second, "5 more poll rounds", func() bool { return sh.s.streams[0].polls.Load() >= polls+5 })
	if got := skipped(sh.s); got != wantSkipped {
		t.Fatalf("skip counters %+v, want %+v", got, wantSkipped)
	}
	if st := sh.s.Stats(); st.Records != int64(len(want)) || st.SendErrors != 0 {
		t.Fatalf("first shipper: %+v", st)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(sh.s.Collector())
	rec := httptest.NewRecorder()
	daemon.Handler(reg, sh.s.Routes, sh.s.Ready).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range []string{
		fmt.Sprintf(`mercury_shipper_skipped_blocks_total{stream="spans"} %d`, wantSkipped.SkippedBlocks),
		fmt.Sprintf(`mercury_shipper_skipped_bytes_total{stream="spans"} %d`, wantSkipped.SkippedBytes),
		fmt.Sprintf(`mercury_shipper_skipped_records_total{stream="spans"} %d`, wantSkipped.SkippedRecords),
		`mercury_shipper_skipped_segments_total{stream="spans"} 0`,
	} {
		if !strings.Contains(rec.Body.String(), line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if err := sh.stop(); err != nil {
		t.Fatal(err)
	}
	cur, err := loadCursor(filepath.Join(spoolDir, ".ship"), StreamSpans)
	if err != nil || cur != (cursor{Seq: w.seq, Off: tornAt}) {
		t.Fatalf("cursor %+v (%v), want the unfinished block's start %d in segment %d", cur, err, tornAt, w.seq)
	}
	if _, err := os.Stat(blocks[0].path); !os.IsNotExist(err) {
		t.Fatalf("the shipped sealed segment is still there: %v", err)
	}

	// The writer completes the block and goes on; a new shipper starts at the cursor.
	w.write(tail[len(tail)/2:])
	expect(want, ids)
	w.rotate()
	expect(want, gen.block(w, 100))
	sh2 := startShipper(t, cfg)
	c.readUntil(30*time.Second, want)
	waitFor(t, 10*time.Second, "the second shipper's 200 records", func() bool { return sh2.s.Stats().Records == 200 })
	if got := skipped(sh2.s); got != (StreamStats{}) {
		t.Fatalf("the restarted shipper stepped over damage again: %+v", got)
	}
	for id, n := range c.seen {
		if !want[id] {
			t.Fatalf("span %x from a damaged block arrived", id)
		}
		if n != 1 {
			t.Fatalf("span %x arrived %d times", id, n)
		}
	}
	if len(c.seen) != len(want) {
		t.Fatalf("got %d spans, want %d", len(c.seen), len(want))
	}
}
