// Package pebblestore is the embedded trace store: one Pebble database per UTC day holding
// both the index and the rows, so `mercury up` needs no servers. Retention closes and removes
// whole day directories, like deleting daily Elasticsearch indices.
package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

var (
	_ tracestore.Index      = (*Store)(nil)
	_ tracestore.Rows       = (*Store)(nil)
	_ tracestore.Retention  = (*Store)(nil)
	_ tracestore.SpanWriter = (*Store)(nil)
)

const dayLayout = "2006-01-02"

// dropPrefix marks a day directory being removed; Open finishes the removal after a crash.
const dropPrefix = ".drop-"

// Options tune the store; the zero value is usable.
type Options struct {
	// CacheBytes is the block cache shared by all day databases (0 means 128 MiB).
	CacheBytes int64
	// MemTableBytes is each day database's memtable size (0 means 32 MiB).
	MemTableBytes uint64
}

// Store implements tracestore.Index, Rows, Retention and SpanWriter.
type Store struct {
	dir   string
	opts  Options
	cache *pebble.Cache

	// mu guards days: operations hold it shared for their whole run, DropBefore and Close
	// hold it exclusively, so a database is never closed under a reader.
	mu     sync.RWMutex
	days   map[int64]*pebble.DB // key: Unix seconds of the UTC midnight
	closed bool
	comp   *pebble.Comparer
}

// Open opens (creating if needed) a store under dir and every day database found there.
func Open(dir string, opts Options) (*Store, error) {
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 128 << 20
	}
	if opts.MemTableBytes == 0 {
		opts.MemTableBytes = 32 << 20
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	comp := *pebble.DefaultComparer
	comp.Split = split
	comp.Name = "mercury.tracestore.v1"
	s := &Store{dir: dir, opts: opts, cache: pebble.NewCache(opts.CacheBytes), days: map[int64]*pebble.DB{}, comp: &comp}
	entries, err := os.ReadDir(dir)
	if err != nil {
		s.cache.Unref()
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, dropPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return nil, errors.Join(fmt.Errorf("pebblestore: %w", err), s.Close())
			}
			continue
		}
		d, err := time.Parse(dayLayout, name)
		if err != nil || !e.IsDir() {
			continue
		}
		if _, err := s.openDay(d.Unix()); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

func (s *Store) openDay(day int64) (*pebble.DB, error) {
	o := &pebble.Options{
		Cache:        s.cache,
		Comparer:     s.comp,
		MemTableSize: s.opts.MemTableBytes,
		// Index scans are written in ts order per prefix; larger L0 thresholds keep ingest
		// from stalling on compactions on a small machine.
		L0CompactionThreshold: 4,
		L0StopWritesThreshold: 24,
		Logger:                quietLogger{},
	}
	o.Levels = make([]pebble.LevelOptions, 7)
	for i := range o.Levels {
		// Default 4 KB blocks: reads are point lookups and short scans, and a GetTrace
		// profile with 32 KB blocks spent most of its time decompressing whole blocks.
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(filepath.Join(s.dir, time.Unix(day, 0).UTC().Format(dayLayout)), o)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: open day %s: %w", time.Unix(day, 0).UTC().Format(dayLayout), err)
	}
	s.days[day] = db
	return db, nil
}

// quietLogger drops Pebble's informational lines; fatal errors still panic as Pebble expects.
type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{})              {}
func (quietLogger) Errorf(string, ...interface{})             {}
func (quietLogger) Fatalf(format string, args ...interface{}) { panic(fmt.Sprintf(format, args...)) }

// Close closes every day database.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for d, db := range s.days {
		errs = append(errs, db.Close())
		delete(s.days, d)
	}
	s.cache.Unref()
	return errors.Join(errs...)
}

// Days lists the stored UTC days, newest first.
func (s *Store) Days() []time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]time.Time, 0, len(s.days))
	for _, d := range s.sortedDays() {
		out = append(out, time.Unix(d, 0).UTC())
	}
	return out
}

// sortedDays returns the open days newest first; the caller holds mu.
func (s *Store) sortedDays() []int64 {
	days := make([]int64, 0, len(s.days))
	for d := range s.days {
		days = append(days, d)
	}
	slices.Sort(days)
	slices.Reverse(days)
	return days
}

// read runs fn with mu held shared.
func (s *Store) read(fn func() error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return tracestore.ErrClosed
	}
	return fn()
}

// ensureDays opens the databases of the given days that are not open yet.
func (s *Store) ensureDays(days []int64) error {
	s.mu.RLock()
	missing := slices.ContainsFunc(days, func(d int64) bool { return s.days[d] == nil })
	s.mu.RUnlock()
	if !missing {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return tracestore.ErrClosed
	}
	for _, d := range days {
		if s.days[d] == nil {
			if _, err := s.openDay(d); err != nil {
				return retry.Retryable(err)
			}
		}
	}
	return nil
}

// DropBefore closes and removes every day that ended at or before cutoff. The directory is
// renamed first, so a crash mid-removal leaves no half-deleted day that Open would reopen.
func (s *Store) DropBefore(ctx context.Context, cutoff time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return tracestore.ErrClosed
	}
	for d, db := range s.days {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Unix(d, 0).Add(24 * time.Hour).After(cutoff) {
			continue
		}
		name := time.Unix(d, 0).UTC().Format(dayLayout)
		delete(s.days, d)
		if err := db.Close(); err != nil {
			return fmt.Errorf("pebblestore: close day %s: %w", name, err)
		}
		tmp := filepath.Join(s.dir, dropPrefix+name)
		if err := os.Rename(filepath.Join(s.dir, name), tmp); err != nil {
			return fmt.Errorf("pebblestore: drop day %s: %w", name, err)
		}
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("pebblestore: drop day %s: %w", name, err)
		}
	}
	return nil
}

// PutSpans stores the rows of spans.
func (s *Store) PutSpans(ctx context.Context, spans []schemas.Span) error {
	return s.write(ctx, spans, true, false)
}

// IndexSpans stores the index entries of spans.
func (s *Store) IndexSpans(ctx context.Context, spans []schemas.Span) error {
	return s.write(ctx, spans, false, true)
}

// WriteSpans stores rows and index entries in one synced batch per day.
func (s *Store) WriteSpans(ctx context.Context, spans []schemas.Span) error {
	return s.write(ctx, spans, true, true)
}

// write groups spans by start day and commits one Sync batch per day: a span's rows and index
// entries land in the day it started, so a trace crossing midnight spans two databases.
func (s *Store) write(ctx context.Context, spans []schemas.Span, rows, index bool) error {
	if len(spans) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return retry.Retryable(err)
	}
	var days []int64
	for i := range spans {
		if d := tracestore.DayOf(spans[i].StartUnixNano).Unix(); !slices.Contains(days, d) {
			days = append(days, d)
		}
	}
	if err := s.ensureDays(days); err != nil {
		return err
	}
	return s.read(func() error {
		kv := kvPool.Get().(*sortedKVs)
		defer kvPool.Put(kv)
		for _, d := range days {
			db := s.days[d]
			if db == nil {
				// DropBefore removed the day between ensureDays and here: data that old is
				// past retention, so dropping it is what retention asked for.
				continue
			}
			kv.reset()
			for i := range spans {
				sp := &spans[i]
				if len(days) > 1 && tracestore.DayOf(sp.StartUnixNano).Unix() != d {
					continue
				}
				addSpan(kv, sp, rows, index)
			}
			// Sized up front: growing a batch of a few hundred KB copies it repeatedly.
			b := db.NewBatchWithSize(len(kv.arena) + 16*len(kv.recs))
			kv.sortInto(b)
			err := b.Commit(pebble.Sync)
			b.Close()
			if err != nil {
				return retry.Retryable(fmt.Errorf("pebblestore: commit: %w", err))
			}
		}
		return nil
	})
}

// sortedKVs collects a batch's entries so they reach the memtable in key order: the
// skiplist inserter then starts each search from the previous insert's splice, which cut
// the memtable insert, the largest ingest cost, substantially.
type sortedKVs struct {
	arena   []byte
	recs    []kvRec
	scratch []byte
}

type kvRec struct{ k, v, end int32 } // arena offsets: key [k,v), value [v,end)

var kvPool = sync.Pool{New: func() any { return &sortedKVs{} }}

func (s *sortedKVs) reset() { s.arena, s.recs = s.arena[:0], s.recs[:0] }

func (s *sortedKVs) put(k, v []byte) {
	r := kvRec{k: int32(len(s.arena))}
	s.arena = append(s.arena, k...)
	r.v = int32(len(s.arena))
	s.arena = append(s.arena, v...)
	r.end = int32(len(s.arena))
	s.recs = append(s.recs, r)
}

func (s *sortedKVs) key(r kvRec) []byte { return s.arena[r.k:r.v] }

func (s *sortedKVs) sortInto(b *pebble.Batch) {
	slices.SortFunc(s.recs, func(x, y kvRec) int { return bytes.Compare(s.key(x), s.key(y)) })
	for _, r := range s.recs {
		_ = b.Set(s.arena[r.k:r.v], s.arena[r.v:r.end], nil)
	}
}

// addSpan adds sp's row and/or index entries to kv.
func addSpan(kv *sortedKVs, sp *schemas.Span, rows, index bool) {
	ks := keyspace(sp.Dyed)
	buf := kv.scratch[:0]
	defer func() { kv.scratch = buf }()
	if rows {
		buf = rowKey(buf, ks, sp)
		n := len(buf)
		buf = tracestore.AppendRow(buf, sp)
		kv.put(buf[:n], buf[n:])
	}
	if !index {
		return
	}
	isErr := tracestore.IsError(sp)
	var e [entryLen]byte
	entry := appendEntry(e[:0], sp, isErr)
	set := func(key []byte) []byte {
		key = appendTail(key, sp)
		kv.put(key, entry)
		return key
	}
	for _, bk := range sp.BusinessKeys {
		buf = set(bkPrefix(buf[:0], ks, bk))
	}
	buf = set(opPrefix(buf[:0], ks, sp.Service, sp.Operation))
	buf = set(svcPrefix(buf[:0], ks, idxSvc, sp.Service))
	if isErr {
		buf = set(svcPrefix(buf[:0], ks, idxErr, sp.Service))
	}
}
