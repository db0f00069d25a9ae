package ship

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
)

// batch is the unit of sending and of cursor advance: whole blocks, possibly from several
// segments.
type batch struct {
	msgs     []kafka.Message
	arena    []byte          // keys and values of msgs
	bytes    int64           // message value bytes
	dropped  int64           // oversize records left out
	pos      cursor          // read position after the batch's last block: the cursor once acknowledged
	finished []spool.Segment // segments read to the end (or skipped) in this batch: deleted once committed
}

// stream ships one spool directory to one topic. Three goroutines pipeline the work: the
// reader fills the next batch from disk, the sender keeps up to InFlight batches at the broker,
// and the committer makes the cursor durable (an fsync) past each acknowledged batch, in order.
// The cursor only ever moves forward over acknowledged records.
type stream struct {
	cfg       *Config
	log       *slog.Logger
	name      string
	topic     string
	keyFields []string

	committed cursor // durable: acknowledged up to here (written by the committer under mu)
	pos       cursor // read position (reader goroutine)

	cur       *spool.SegmentReader
	curPath   string
	curSplit  *splitter
	curFP     uint64
	splitters map[uint64]*splitter
	handed    cursor // read position at the end of the last batch handed to the sender
	b         *batch // the batch being filled

	mu sync.Mutex // guards committed and scan: the committer advances them, lag updates read them

	limiter  rateLimiter
	inflight atomic.Int64 // records sent or being sent and not yet durably committed
	cursorMu sync.Mutex   // one writer of the in-flight mark at a time (sender, committer)

	seen map[uint64]bool // segments listed at or after the read position and not opened yet

	// afterCommit, set by tests before Run, is called by the committer after each durable
	// cursor advance with the records committed so far. Blocking in it holds the cursor where
	// it is while the reader and sender go on, so a test can kill the shipper mid-stream at a
	// point it chooses instead of racing it.
	afterCommit func(ctx context.Context, committed int64)

	scan     map[uint64]*scanState
	lastScan time.Time // under mu

	records, bytes, lagRecords, lagBytes, sendErrors, dups, segments, skipped, droppedTotal atomic.Int64
	skippedBlocks, skippedBytes, skippedRecords                                             atomic.Int64 // damaged stretches stepped over
	lastAdvance                                                                             atomic.Int64 // unix nanos
	polls                                                                                   atomic.Int64 // caught-up rounds of the reader (tests wait on it)
}

func newStream(sh *Shipper, name string) *stream {
	st := &stream{
		cfg: &sh.cfg, name: name, topic: topicOf(name), keyFields: keyFieldsOf(name),
		log:       sh.cfg.Logger.With("stream", name),
		splitters: map[uint64]*splitter{},
		scan:      map[uint64]*scanState{},
		seen:      map[uint64]bool{},
		limiter:   rateLimiter{rate: sh.cfg.RateBytes},
	}
	st.lastAdvance.Store(time.Now().UnixNano())
	return st
}

func (st *stream) stats() StreamStats {
	s := StreamStats{
		Records: st.records.Load(), Bytes: st.bytes.Load(),
		LagRecords: st.lagRecords.Load(), LagBytes: st.lagBytes.Load(),
		SendErrors: st.sendErrors.Load(), PossibleDuplicates: st.dups.Load(),
		Segments: st.segments.Load(), SkippedSegments: st.skipped.Load(), DroppedRecords: st.droppedTotal.Load(),
		SkippedBlocks: st.skippedBlocks.Load(), SkippedBytes: st.skippedBytes.Load(), SkippedRecords: st.skippedRecords.Load(),
	}
	if s.LagBytes > 0 {
		s.CursorAge = time.Since(time.Unix(0, st.lastAdvance.Load()))
	}
	return s
}

func (st *stream) run(ctx context.Context) error {
	c, err := loadCursor(st.cfg.CursorDir, st.name)
	if err != nil {
		return err
	}
	if n := loadMark(st.cfg.CursorDir, st.name); n > 0 {
		// The previous run died between sending batches and recording their acknowledgement.
		st.dups.Add(n)
		st.log.Info("ship: resuming after unacknowledged sends; their records may be duplicated", "possible_duplicates", n)
		if err := saveMark(st.cfg.CursorDir, st.name, 0); err != nil {
			return fmt.Errorf("ship: in-flight mark: %w", err)
		}
	}
	st.committed, st.pos, st.handed = c, c, c
	st.removeFinishedBefore()

	w, err := bus.NewProducer(st.cfg.Bus, bus.ProducerConfig{
		Topic:           st.topic,
		Compression:     st.cfg.Compression,
		MaxRequestBytes: st.cfg.MaxMessageBytes,
		Timeout:         st.cfg.SendTimeout,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	full := make(chan *batch)
	// One batch being filled plus InFlight being sent.
	// Batches: one being filled, InFlight at the broker, one being committed.
	free := make(chan *batch, st.cfg.InFlight+2)
	for range st.cfg.InFlight + 2 {
		free <- &batch{}
	}
	acked := make(chan *batch, 1)
	sendErr, commitErr := make(chan error, 1), make(chan error, 1)
	go func() {
		sendErr <- st.sendLoop(ctx, w, full, acked)
		close(acked)
	}()
	go func() {
		commitErr <- st.commitLoop(ctx, acked, free)
		cancel() // a failed cursor write stops the reader and the sender too
	}()
	readErr := st.readLoop(ctx, full, free)
	cancel()
	err = errors.Join(<-sendErr, <-commitErr)
	if st.cur != nil {
		st.cur.Close()
	}
	w.Close()
	if readErr != nil {
		return readErr
	}
	return err
}

func (st *stream) readLoop(ctx context.Context, full, free chan *batch) error {
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		}
		for ctx.Err() == nil {
			select {
			case st.b = <-free:
			case <-ctx.Done():
				return nil
			}
			if err := st.fill(ctx); err != nil {
				return err
			}
			if len(st.b.msgs) == 0 && st.pos == st.handed {
				free <- st.b // caught up
				break
			}
			st.b.pos, st.handed = st.pos, st.pos
			select {
			case full <- st.b:
			case <-ctx.Done():
				return nil
			}
		}
		st.updateLag(false)
		st.polls.Add(1)
		poll.Reset(st.cfg.Poll)
	}
}

// sendLoop keeps up to InFlight batches in the air and passes them on to the committer
// strictly in order, as they are acknowledged. With more than one in flight a retried batch may
// land after a later one, so per-partition order across batches is not kept; Mercury's
// consumers do not need it (idempotent writes, event-time windows).
func (st *stream) sendLoop(ctx context.Context, w *bus.Producer, full <-chan *batch, acked chan<- *batch) error {
	type flight struct {
		b    *batch
		done chan error
	}
	var q []flight
	defer func() {
		for _, f := range q {
			<-f.done // produce goroutines end promptly once ctx is cancelled
		}
	}()
	for {
		var in <-chan *batch
		if len(q) < st.cfg.InFlight {
			in = full
		}
		var oldest chan error
		if len(q) > 0 {
			oldest = q[0].done
		}
		select {
		case <-ctx.Done():
			return nil
		case b := <-in:
			if n := int64(len(b.msgs)); n > 0 {
				if err := st.limiter.wait(ctx, b.bytes); err != nil {
					return nil
				}
				st.inflight.Add(n)
				if err := st.writeMark(); err != nil {
					return err
				}
			}
			f := flight{b, make(chan error, 1)}
			q = append(q, f)
			go func() { f.done <- st.produce(ctx, w, f.b) }()
		case err := <-oldest:
			f := q[0]
			q = q[1:]
			if err != nil {
				return nil // only ctx ends produce: killed mid-send, the in-flight mark tells the next run
			}
			select {
			case acked <- f.b:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// commitLoop makes the cursor durable past each acknowledged batch, in order, off the sender's
// path: the fsync (milliseconds) overlaps the next sends instead of delaying them. It drains
// acked even after a failure so the sender never blocks on it.
func (st *stream) commitLoop(ctx context.Context, acked <-chan *batch, free chan<- *batch) error {
	var failed error
	for b := range acked {
		if failed != nil {
			continue
		}
		if err := st.commit(b); err != nil {
			failed = err
			continue
		}
		if st.afterCommit != nil {
			st.afterCommit(ctx, st.records.Load())
		}
		free <- b
		st.updateLag(false)
	}
	return failed
}

// writeMark records the records in flight. The mutex keeps its two writers (the sender before
// a send, the committer after a durable cursor) from interleaving.
func (st *stream) writeMark() error {
	st.cursorMu.Lock()
	defer st.cursorMu.Unlock()
	if err := saveMark(st.cfg.CursorDir, st.name, st.inflight.Load()); err != nil {
		return fmt.Errorf("ship: in-flight mark: %w", err)
	}
	return nil
}

// fill builds the next batch from whole blocks, crossing segment boundaries.
func (st *stream) fill(ctx context.Context) error {
	st.b.msgs, st.b.arena, st.b.bytes, st.b.dropped, st.b.finished = st.b.msgs[:0], st.b.arena[:0], 0, 0, st.b.finished[:0]
	var lingerUntil time.Time
	for len(st.b.msgs) < st.cfg.BatchRecords && st.b.bytes < st.cfg.BatchBytes {
		progressed, err := st.readBlock()
		if err != nil {
			return err
		}
		if progressed {
			continue
		}
		if len(st.b.msgs) == 0 {
			return nil
		}
		now := time.Now()
		if lingerUntil.IsZero() {
			lingerUntil = now.Add(st.cfg.Linger)
		}
		if !now.Before(lingerUntil) {
			break
		}
		if err := retry.Sleep(ctx, min(lingerUntil.Sub(now), st.cfg.Linger/4+time.Millisecond)); err != nil {
			return nil // shutting down: the caller sees ctx and abandons the batch
		}
	}
	return nil
}

// readBlock appends the next block's records to the batch. It reports progress (records
// appended or a segment finished/skipped) or false when no data is available right now.
func (st *stream) readBlock() (bool, error) {
	if st.cur == nil {
		return st.openNext()
	}
	blk, err := st.cur.Next()
	if err == nil {
		return true, st.appendBlock(blk)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, schemas.ErrTornBlock) {
		st.skip(err, "unreadable segment", true) // an I/O error: damage is stepped over by Next
		return true, nil
	}
	// End of the data written so far. The segment is finished only once it is sealed; the
	// writer completes its last write before it creates the next segment, so after seeing a
	// successor one more read finds everything.
	sealed, lerr := st.hasSuccessor(st.pos.Seq)
	if lerr != nil || !sealed {
		return false, lerr
	}
	blk, err = st.cur.Next()
	switch {
	case err == nil:
		return true, st.appendBlock(blk)
	case errors.Is(err, io.EOF):
		st.finish(true)
	case errors.Is(err, schemas.ErrTornBlock):
		// A block torn by a crashed writer, or damage reaching the end: one lost block.
		if blk, err = st.cur.SkipTail(err); err != nil {
			st.skip(err, "unreadable segment", true)
			return true, nil
		}
		st.damaged(blk, "the end of a sealed segment does not parse (a crashed writer's torn block, or damage)")
		st.finish(true)
	default:
		st.skip(err, "unreadable segment", true)
	}
	return true, nil
}

// damaged counts and logs a damaged stretch the segment reader stepped over, and moves the
// read position past it: the cursor may stop there like after any block.
func (st *stream) damaged(blk spool.Block, why string) {
	st.skippedBlocks.Add(blk.Damage.Blocks)
	st.skippedBytes.Add(blk.Damage.Bytes)
	st.skippedRecords.Add(blk.Damage.Records)
	st.log.Warn("ship: stepped over damaged blocks", "reason", why, "seq", st.pos.Seq, "offset", blk.Offset, "end", blk.End,
		"blocks", blk.Damage.Blocks, "bytes", blk.Damage.Bytes, "records", blk.Damage.Records, "err", blk.Err)
	st.pos.Off = blk.End
}

func (st *stream) appendBlock(blk spool.Block) error {
	if blk.Damage != (spool.Damage{}) {
		st.damaged(blk, "corrupt block")
		return nil
	}
	b := st.b
	n0, a0, b0, d0 := len(b.msgs), len(b.arena), b.bytes, b.dropped
	fp := st.curFP
	for _, body := range blk.Records {
		if len(body)+schemas.SingleObjectHeaderLen > st.cfg.MaxMessageBytes {
			b.dropped++
			continue
		}
		k0, k1, err := st.curSplit.keys(body)
		if err != nil {
			b.msgs, b.arena, b.bytes, b.dropped = b.msgs[:n0], b.arena[:a0], b0, d0
			blk.Damage, blk.Err = spool.Damage{Blocks: 1, Bytes: blk.End - blk.Offset, Records: int64(len(blk.Records))}, err
			st.damaged(blk, "a record's key fields do not parse")
			return nil
		}
		ks := len(b.arena)
		switch {
		case st.name == StreamSpans && len(k0) == 16:
			b.arena = hex.AppendEncode(b.arena, k0)
		case k1 != nil:
			b.arena = append(append(append(b.arena, k0...), '/'), k1...)
		default:
			b.arena = append(b.arena, k0...)
		}
		vs := len(b.arena)
		b.arena = schemas.AppendSingleHeader(b.arena, fp)
		b.arena = append(b.arena, body...)
		// Slices taken now stay valid if arena grows later: the old array lives on.
		b.msgs = append(b.msgs, kafka.Message{Key: b.arena[ks:vs:vs], Value: b.arena[vs:len(b.arena):len(b.arena)]})
		b.bytes += int64(len(b.arena) - vs)
	}
	st.pos.Off = blk.End
	return nil
}

// openNext opens the first segment at or after the read position.
func (st *stream) openNext() (bool, error) {
	segs, err := st.list()
	if err != nil {
		return false, err
	}
	i := sort.Search(len(segs), func(i int) bool { return segs[i].Seq >= st.pos.Seq })
	next := uint64(math.MaxUint64)
	if i < len(segs) {
		next = segs[i].Seq
	}
	// Segments listed earlier, not shipped yet, and gone now: the agent's disk budget removed
	// them (oldest first) while the shipper was behind.
	for seq := range st.seen {
		if seq < st.pos.Seq {
			delete(st.seen, seq)
		} else if seq < next {
			delete(st.seen, seq)
			st.skipped.Add(1)
			st.log.Warn("ship: segment vanished before it was shipped", "seq", seq)
			if seq == st.pos.Seq {
				st.pos.Off = 0 // counted here, not again below
			}
		}
	}
	if i == len(segs) {
		return false, nil
	}
	seg := segs[i]
	sealed := i+1 < len(segs)
	if seg.Seq != st.pos.Seq && st.pos.Off != 0 {
		// The cursor (from an earlier run) points inside a segment that is gone.
		st.skipped.Add(1)
		st.log.Warn("ship: segment vanished before it was fully shipped", "seq", st.pos.Seq)
	}
	if seg.Seq != st.pos.Seq {
		st.pos = cursor{Seq: seg.Seq}
	}
	r, err := spool.OpenSegment(seg.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		st.skipped.Add(1)
		st.log.Warn("ship: segment vanished before it was shipped", "seq", seg.Seq)
		st.pos = cursor{Seq: seg.Seq + 1}
		return true, nil
	case errors.Is(err, schemas.ErrTornBlock) && !sealed:
		return false, nil // the agent is still writing the header
	case err != nil:
		st.skipSegment(seg, err, "unreadable segment header", sealed)
		return true, nil
	}
	sp, err := st.splitterFor(r.Schema())
	if err != nil {
		r.Close()
		st.skipSegment(seg, err, "unusable writer schema", sealed)
		return true, nil
	}
	off := r.DataStart()
	if seg.Seq == st.pos.Seq && st.pos.Off > 0 {
		off = st.pos.Off
	}
	// The file as opened, not as listed: the listing may have seen it before its header.
	size, err := r.Size()
	if err != nil {
		r.Close()
		return false, err
	}
	if off > size {
		r.Close()
		st.skipSegment(seg, fmt.Errorf("%w: cursor %d beyond size %d", schemas.ErrCorrupt, off, size), "segment shorter than the cursor", sealed)
		return true, nil
	}
	if err := r.SeekTo(off); err != nil {
		r.Close()
		return false, err
	}
	st.cur, st.curPath, st.curSplit, st.curFP = r, seg.Path, sp, r.Schema().Fingerprint
	st.pos = cursor{Seq: seg.Seq, Off: off}
	return true, nil
}

func (st *stream) splitterFor(s *schemas.Schema) (*splitter, error) {
	if sp, ok := st.splitters[s.Fingerprint]; ok {
		return sp, nil
	}
	sp, err := newSplitter(s.JSON(), st.keyFields...)
	if err != nil {
		return nil, err
	}
	st.splitters[s.Fingerprint] = sp
	return sp, nil
}

func (st *stream) hasSuccessor(seq uint64) (bool, error) {
	segs, err := st.list()
	if err != nil {
		return false, err
	}
	return len(segs) > 0 && segs[len(segs)-1].Seq > seq, nil
}

// list lists the stream's segments and remembers the ones not shipped yet, so that one
// deleted behind the shipper's back is noticed (reader goroutine only).
func (st *stream) list() ([]spool.Segment, error) {
	segs, err := spool.ListSegments(st.cfg.Spool, st.name)
	if err != nil {
		return nil, fmt.Errorf("ship: list %s: %w", st.name, err)
	}
	for _, sg := range segs {
		if sg.Seq >= st.pos.Seq && (st.cur == nil || sg.Seq != st.pos.Seq) {
			st.seen[sg.Seq] = true
		}
	}
	return segs, nil
}

// finish closes the current segment; it is deleted once the cursor has moved past it.
func (st *stream) finish(deletable bool) {
	seg := spool.Segment{Stream: st.name, Path: st.curPath, Seq: st.pos.Seq}
	st.cur.Close()
	st.cur = nil
	if deletable {
		st.b.finished = append(st.b.finished, seg)
	}
	st.pos = cursor{Seq: seg.Seq + 1}
}

// skip gives up on the rest of the current segment: one log line and a counter.
func (st *stream) skip(err error, why string, deletable bool) {
	st.skipped.Add(1)
	st.log.Warn("ship: skipping the rest of a segment", "reason", why, "seq", st.pos.Seq, "offset", st.pos.Off, "err", err)
	st.finish(deletable)
}

func (st *stream) skipSegment(seg spool.Segment, err error, why string, sealed bool) {
	st.skipped.Add(1)
	st.log.Warn("ship: skipping segment", "reason", why, "seq", seg.Seq, "err", err)
	if sealed {
		// A corrupt active segment stays: the agent still has it open.
		st.b.finished = append(st.b.finished, seg)
	}
	st.pos = cursor{Seq: seg.Seq + 1}
}

// produce sends the batch until the broker acknowledges it (acks=all), backing off between
// attempts; it returns only on success or when ctx ends.
func (st *stream) produce(ctx context.Context, w *bus.Producer, b *batch) error {
	n := int64(len(b.msgs))
	if n == 0 {
		return nil
	}
	bo := retry.Backoff{Min: st.cfg.BackoffMin, Max: st.cfg.BackoffMax}
	for {
		sctx, cancel := context.WithTimeout(ctx, st.cfg.SendTimeout)
		err := w.WriteMessages(sctx, b.msgs...)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		st.sendErrors.Add(1)
		st.dups.Add(maybeDelivered(err, n))
		st.log.Warn("ship: send failed, backing off", "records", n, "err", summarize(err))
		st.updateLag(false) // the spool keeps growing while the broker is away
		if err := bo.Wait(ctx); err != nil {
			return err
		}
	}
}

// commit makes the cursor durable past an acknowledged batch and deletes the segments the
// cursor has left behind.
func (st *stream) commit(b *batch) error {
	if err := saveCursor(st.cfg.CursorDir, st.name, b.pos); err != nil {
		return fmt.Errorf("ship: cursor: %w", err)
	}
	st.mu.Lock()
	st.committed = b.pos
	for _, seg := range b.finished {
		delete(st.scan, seg.Seq)
	}
	st.mu.Unlock()
	// Only now are the batch's records safe from being sent again after a crash.
	st.inflight.Add(-int64(len(b.msgs)))
	if err := st.writeMark(); err != nil {
		return err
	}
	if b.dropped > 0 {
		st.droppedTotal.Add(b.dropped)
		st.log.Warn("ship: dropped records larger than the maximum message size", "records", b.dropped, "max_bytes", st.cfg.MaxMessageBytes)
	}
	st.records.Add(int64(len(b.msgs)))
	st.bytes.Add(b.bytes)
	st.lastAdvance.Store(time.Now().UnixNano())
	for _, seg := range b.finished {
		if err := os.Remove(seg.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			st.log.Warn("ship: cannot delete shipped segment", "path", seg.Path, "err", err)
		}
	}
	return nil
}

// maybeDelivered estimates how many messages of a failed send may nevertheless be in Kafka
// (and so will be duplicated by the retry): those the broker acknowledged, and those whose
// fate is unknown (connection lost, timeout). A broker error code means not written.
func maybeDelivered(err error, n int64) int64 {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		var c int64
		for _, e := range werrs {
			var kerr kafka.Error
			var operr *net.OpError
			switch {
			case e == nil:
				c++ // acknowledged
			case errors.As(e, &kerr):
				if kerr == kafka.RequestTimedOut {
					c++ // acks=all timed out: the leader may have appended it
				}
			case errors.As(e, &operr) && operr.Op == "dial":
				// never reached a broker
			default:
				c++ // connection lost mid-request: fate unknown
			}
		}
		return c
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return n // the wait timed out while produce requests were out
	}
	return 0 // failed before producing (metadata, dial)
}

// summarize keeps a failed send's log line short: kafka.WriteErrors prints one error per
// message, thousands of identical lines for one refused connection.
func summarize(err error) string {
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) {
		return err.Error()
	}
	for _, e := range werrs {
		if e != nil {
			return fmt.Sprintf("%d of %d messages failed, first: %v", werrs.Count(), len(werrs), e)
		}
	}
	return err.Error()
}

// removeFinishedBefore deletes sealed segments the committed cursor has passed: a previous
// run finished them but died before deleting.
func (st *stream) removeFinishedBefore() {
	segs, err := spool.ListSegments(st.cfg.Spool, st.name)
	if err != nil || len(segs) == 0 {
		return
	}
	last := segs[len(segs)-1].Seq
	for _, s := range segs {
		if s.Seq < st.committed.Seq && s.Seq < last {
			if err := os.Remove(s.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				st.log.Warn("ship: cannot delete shipped segment", "path", s.Path, "err", err)
			}
		}
	}
}

// scanState counts the records of one segment by walking its block headers only.
type scanState struct {
	off  int64   // next block header to read; 0 before the file header was parsed
	data int64   // offset of the first block (file header length), once parsed
	ends []int64 // block end offsets
	cum  []int64 // records up to and including each block
	sync [16]byte
	dead bool // unreadable or damaged: counted no further (the reader steps over damage, this walk does not)
}

func (s *scanState) total() int64 {
	if len(s.cum) == 0 {
		return 0
	}
	return s.cum[len(s.cum)-1]
}

// after returns the records in blocks ending after off.
func (s *scanState) after(off int64) int64 {
	i := sort.Search(len(s.ends), func(i int) bool { return s.ends[i] > off })
	if i == 0 {
		return s.total()
	}
	return s.total() - s.cum[i-1]
}

// updateLag refreshes lag and segment gauges, at most once a second unless forced.
func (st *stream) updateLag(force bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !force && time.Since(st.lastScan) < time.Second {
		return
	}
	st.lastScan = time.Now()
	segs, err := spool.ListSegments(st.cfg.Spool, st.name)
	if err != nil {
		return
	}
	st.segments.Store(int64(len(segs)))
	var lagB, lagR int64
	live := map[uint64]bool{}
	for _, seg := range segs {
		if seg.Seq < st.committed.Seq {
			continue
		}
		live[seg.Seq] = true
		ss := st.scan[seg.Seq]
		if ss == nil {
			ss = &scanState{}
			st.scan[seg.Seq] = ss
		}
		ss.advance(seg)
		// Lag counts block bytes only: a fresh segment holding just its header is no lag.
		from := ss.data
		if ss.data == 0 {
			from = seg.Size // header not readable (yet): nothing known to be shippable
		}
		if seg.Seq == st.committed.Seq && st.committed.Off > from {
			from = st.committed.Off
		}
		lagB += max(seg.Size-from, 0)
		lagR += ss.after(from)
	}
	for seq := range st.scan {
		if !live[seq] {
			delete(st.scan, seq)
		}
	}
	st.lagBytes.Store(lagB)
	st.lagRecords.Store(lagR)
}

func (s *scanState) advance(seg spool.Segment) {
	if s.dead || (s.off > 0 && s.off >= seg.Size) {
		return
	}
	f, err := os.Open(seg.Path)
	if err != nil {
		return
	}
	defer f.Close()
	if s.off == 0 {
		h, err := schemas.ReadOCFHeader(bufio.NewReaderSize(f, 4096))
		if err != nil {
			s.dead = !errors.Is(err, schemas.ErrTornBlock)
			return
		}
		s.off, s.data, s.sync = h.Len, h.Len, h.Sync
	}
	var hdr [2 * binary.MaxVarintLen64]byte
	var sync [16]byte
	for s.off < seg.Size {
		n, _ := f.ReadAt(hdr[:], s.off)
		count, size, p, ok := schemas.OCFBlockHeader(hdr[:n])
		if !ok {
			s.dead = n == len(hdr) // else perhaps a header still being written
			return
		}
		end := s.off + int64(p) + size + 16
		if end > seg.Size {
			return // block not complete yet
		}
		if _, err := f.ReadAt(sync[:], end-16); err != nil || sync != s.sync {
			s.dead = err == nil // a header that lies about its size
			return
		}
		s.ends = append(s.ends, end)
		s.cum = append(s.cum, s.total()+count)
		s.off = end
	}
}

// rateLimiter spaces sends so the average stays under rate bytes/s; a batch goes at once and
// its cost delays the next one.
type rateLimiter struct {
	rate int64
	next time.Time
}

func (l *rateLimiter) wait(ctx context.Context, n int64) error {
	if l.rate <= 0 {
		return nil
	}
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	d := l.next.Sub(now)
	l.next = l.next.Add(time.Duration(float64(n) / float64(l.rate) * float64(time.Second)))
	return retry.Sleep(ctx, d)
}
