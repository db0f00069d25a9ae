package spool

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// Config sizes the spool. Zero values take the defaults.
type Config struct {
	Dir          string        // root; one subdirectory per stream
	SegmentBytes int64         // rotate a segment past this size (default 16 MiB)
	SegmentAge   time.Duration // rotate a non-empty segment this old, so shipped data can be deleted (default 30 s)
	BlockBytes   int           // flush the pending block past this size (default 64 KiB)
	MaxBytes     int64         // disk budget for all streams; oldest segments go first (default 1 GiB)

	// OpenFile creates a segment file; tests inject failing or stalling files. Default:
	// CreateSegmentFile.
	OpenFile func(path string) (File, error)

	now func() time.Time // clock; tests inject one
}

// File is what the writer needs of an *os.File.
type File interface {
	Write([]byte) (int, error)
	Truncate(int64) error
	Sync() error
	Close() error
}

func (c *Config) defaults() {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 16 << 20
	}
	if c.SegmentAge <= 0 {
		c.SegmentAge = 30 * time.Second
	}
	if c.BlockBytes <= 0 {
		c.BlockBytes = 64 << 10
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 1 << 30
	}
	// Keep a handful of segments per stream within the budget, or the budget would have to
	// delete the segment being written.
	if max := c.MaxBytes / int64(4*len(Streams)); c.SegmentBytes > max {
		c.SegmentBytes = max
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.OpenFile == nil {
		c.OpenFile = CreateSegmentFile
	}
}

// Stats counts what the spool did; safe to read concurrently.
type Stats struct {
	Bytes           int64 // on disk, all streams (as of the last scan plus writes since)
	Segments        int64
	WriteErrors     int64
	DeletedSegments int64 // removed to keep the disk budget
	DeletedBytes    int64
}

// Spool owns one Writer per stream and the shared disk budget.
type Spool struct {
	cfg                                                         Config
	writers                                                     map[string]*Writer
	mu                                                          sync.Mutex // budget scans
	lastSeq                                                     atomic.Uint64
	bytes, segments, writeErrors, deletedSegments, deletedBytes atomic.Int64
}

// Open creates the stream directories and measures what is already on disk (segments left by
// an earlier run stay for the shipper).
func Open(cfg Config) (*Spool, error) {
	cfg.defaults()
	if cfg.Dir == "" {
		return nil, errors.New("spool: Config.Dir is empty")
	}
	s := &Spool{cfg: cfg, writers: map[string]*Writer{}}
	schemaOf := map[string]string{StreamSpans: schemas.NameSpan, StreamEvents: schemas.NameEvent, StreamHeartbeats: schemas.NameHeartbeat}
	for _, st := range Streams {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, st), 0o755); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		s.writers[st] = &Writer{sp: s, stream: st, schema: schemas.Current(schemaOf[st])}
	}
	if _, err := s.scan(); err != nil {
		return nil, err
	}
	return s, nil
}

// Writer returns the writer of a stream (StreamSpans, StreamEvents, StreamHeartbeats).
func (s *Spool) Writer(stream string) *Writer { return s.writers[stream] }

// Dir is the spool root.
func (s *Spool) Dir() string { return s.cfg.Dir }

// Stats returns a snapshot.
func (s *Spool) Stats() Stats {
	return Stats{Bytes: s.bytes.Load(), Segments: s.segments.Load(), WriteErrors: s.writeErrors.Load(),
		DeletedSegments: s.deletedSegments.Load(), DeletedBytes: s.deletedBytes.Load()}
}

// Flush writes every stream's pending block.
func (s *Spool) Flush() error {
	var errs []error
	for _, st := range Streams {
		if _, err := s.writers[st].Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close flushes, syncs and closes every stream's segment.
func (s *Spool) Close() error {
	var errs []error
	for _, st := range Streams {
		errs = append(errs, s.writers[st].close())
	}
	return errors.Join(errs...)
}

// nextSeq takes a sequence from the clock, strictly above every earlier one.
func (s *Spool) nextSeq() uint64 {
	for {
		last := s.lastSeq.Load()
		seq := max(uint64(s.cfg.now().UnixNano()), last+1)
		if s.lastSeq.CompareAndSwap(last, seq) {
			return seq
		}
	}
}

// scan re-measures the disk (the shipper deletes shipped segments behind our back).
func (s *Spool) scan() ([]Segment, error) {
	var all []Segment
	var bytes int64
	for _, st := range Streams {
		segs, err := ListSegments(s.cfg.Dir, st)
		if err != nil {
			return nil, err
		}
		for _, sg := range segs {
			bytes += sg.Size
			if sg.Seq > s.lastSeq.Load() {
				s.lastSeq.Store(sg.Seq)
			}
		}
		all = append(all, segs...)
	}
	s.bytes.Store(bytes)
	s.segments.Store(int64(len(all)))
	return all, nil
}

// enforceBudget deletes the oldest segments, never an active one, until the spool fits.
func (s *Spool) enforceBudget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes.Load() <= s.cfg.MaxBytes {
		return
	}
	all, err := s.scan()
	if err != nil {
		return
	}
	active := map[string]bool{}
	for _, w := range s.writers {
		active[w.path] = true
	}
	// Oldest first across streams: sequences come from one clock.
	sortSegments(all)
	total := s.bytes.Load()
	for _, sg := range all {
		if total <= s.cfg.MaxBytes {
			break
		}
		if active[sg.Path] || os.Remove(sg.Path) != nil {
			continue
		}
		total -= sg.Size
		s.deletedSegments.Add(1)
		s.deletedBytes.Add(sg.Size)
		s.segments.Add(-1)
	}
	s.bytes.Store(total)
}

// Writer appends records of one stream. It is not safe for concurrent use: the agent has one
// background goroutine per spool.
type Writer struct {
	sp       *Spool
	stream   string
	schema   *schemas.Schema
	f        File
	path     string
	sync     [16]byte
	size     int64 // bytes written to the current segment
	opened   time.Time
	pending  []byte // encoded records of the block being built
	count    int
	out      []byte // the block as written, reused
	mustSeal bool   // a failed write could not be undone: never append to this segment again
}

// Schema is the stream's writer schema.
func (w *Writer) Schema() *schemas.Schema { return w.schema }

// Pending is the buffer the next record is appended to: encode into it and pass the result to
// Commit. This spares a copy per record on the agent's hot path.
func (w *Writer) Pending() []byte { return w.pending }

// Records is the number of records in the pending block: 0 right after a Commit means the
// block was written (or lost, as Commit reported).
func (w *Writer) Records() int { return w.count }

// Commit accepts the pending buffer with one more record appended. When the block is full it is
// written; the returned count is the records lost if that write failed.
func (w *Writer) Commit(pending []byte) (lost int, err error) {
	w.pending = pending
	w.count++
	if len(w.pending) >= w.sp.cfg.BlockBytes {
		return w.Flush()
	}
	return 0, nil
}

// Append adds one encoded record body.
func (w *Writer) Append(body []byte) (lost int, err error) {
	return w.Commit(append(w.pending, body...))
}

// Flush writes the pending block in one write call, rotating the segment first when it is too
// big or too old. On failure the block's records are dropped (and reported as lost) so that a
// full or broken disk never makes memory grow.
func (w *Writer) Flush() (lost int, err error) {
	if w.count == 0 {
		if w.f != nil && w.sp.cfg.now().Sub(w.opened) >= w.sp.cfg.SegmentAge {
			w.seal() // an idle, old segment: let the shipper finish and delete it
		}
		return 0, nil
	}
	n := w.count
	defer func() { w.pending, w.count = w.pending[:0], 0 }()
	if w.f != nil && (w.mustSeal || w.size >= w.sp.cfg.SegmentBytes || w.sp.cfg.now().Sub(w.opened) >= w.sp.cfg.SegmentAge) {
		w.seal()
	}
	if w.f == nil {
		if err := w.create(); err != nil {
			w.sp.writeErrors.Add(1)
			return n, err
		}
	}
	w.out = schemas.AppendOCFBlock(w.out[:0], n, w.pending, w.sync)
	if _, err := w.f.Write(w.out); err != nil {
		w.sp.writeErrors.Add(1)
		// Cut the torn block off so later blocks stay readable; if that fails too, seal the
		// segment: readers skip a torn tail of a sealed segment.
		if w.f.Truncate(w.size) != nil {
			w.mustSeal = true
		}
		return n, fmt.Errorf("spool: write %s: %w", w.path, err)
	}
	w.size += int64(len(w.out))
	if w.sp.bytes.Add(int64(len(w.out))) > w.sp.cfg.MaxBytes {
		w.sp.enforceBudget()
	}
	return 0, nil
}

func (w *Writer) create() error {
	seq := w.sp.nextSeq()
	path := filepath.Join(w.sp.cfg.Dir, w.stream, segmentName(seq))
	f, err := w.sp.cfg.OpenFile(path)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	_, _ = rand.Read(w.sync[:])
	hdr := schemas.AppendOCFHeader(nil, w.schema.JSON(), w.sync)
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("spool: write header %s: %w", path, err)
	}
	w.f, w.path, w.size, w.opened, w.mustSeal = f, path, int64(len(hdr)), w.sp.cfg.now(), false
	w.sp.bytes.Add(w.size)
	w.sp.segments.Add(1)
	return nil
}

// seal closes the current segment; the next block opens a new one, which is what tells readers
// this one is complete.
func (w *Writer) seal() {
	if w.f == nil {
		return
	}
	_ = w.f.Sync()
	_ = w.f.Close()
	w.f, w.path = nil, ""
}

func (w *Writer) close() error {
	_, err := w.Flush()
	w.seal()
	return err
}

// CreateSegmentFile creates a new segment: exclusive, so two writers never share one, and
// append-only, so a write after a truncation lands at the new end.
func CreateSegmentFile(path string) (File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o644)
}
