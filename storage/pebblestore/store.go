// Package pebblestore is the embedded trace store: one Pebble database per UTC day holding
// both the index and the rows, so `mercury up` needs no servers. Retention closes and removes
// whole day directories, like deleting daily Elasticsearch indices.
package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"

	"github.com/cockroachdb/pebble"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/pebbledb"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

var (
	_ tracestore.Index      = (*Store)(nil)
	_ tracestore.Rows       = (*Store)(nil)
	_ tracestore.Retention  = (*Store)(nil)
	_ tracestore.SpanWriter = (*Store)(nil)
)

// Options tune the store; the zero value is usable.
type Options struct {
	// CacheBytes is the block cache shared by all day databases (0 means 128 MiB).
	CacheBytes int64
	// MemTableBytes is each day database's memtable size (0 means 32 MiB).
	MemTableBytes uint64
}

// Store implements tracestore.Index, Rows, Retention and SpanWriter over day databases.
type Store struct {
	days *pebbledb.Days
	tracestore.RowDecoder
}

// Open opens (creating if needed) a store under dir and every day database found there.
func Open(dir string, opts Options) (*Store, error) {
	comp := *pebble.DefaultComparer
	comp.Split = split
	comp.Name = "mercury.tracestore.v1"
	d, err := pebbledb.Open(dir, pebbledb.Options{CacheBytes: opts.CacheBytes, MemTableBytes: opts.MemTableBytes, Comparer: &comp})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	return &Store{days: d}, nil
}

// Days lists the stored UTC days, newest first.
func (s *Store) Days() []time.Time { return s.days.List() }

// Close closes every day database.
func (s *Store) Close() error { return s.days.Close() }

// DropBefore removes whole days that ended at or before cutoff.
func (s *Store) DropBefore(ctx context.Context, cutoff time.Time) error {
	return closed(s.days.DropBefore(ctx, cutoff))
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
		if d := pebbledb.Day(spans[i].StartUnixNano); !slices.Contains(days, d) {
			days = append(days, d)
		}
	}
	if err := s.days.Ensure(days); err != nil {
		return closed(err)
	}
	return closed(s.days.Read(func(v pebbledb.View) error {
		kv := kvPool.Get().(*sortedKVs)
		defer kvPool.Put(kv)
		for _, d := range days {
			db := v.DB(d)
			if db == nil {
				// DropBefore removed the day between ensureDays and here: data that old is
				// past retention, so dropping it is what retention asked for.
				continue
			}
			kv.reset()
			for i := range spans {
				sp := &spans[i]
				if len(days) > 1 && pebbledb.Day(sp.StartUnixNano) != d {
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
	}))
}

// closed reports a closed engine as the trace store contract names it.
func closed(err error) error {
	if errors.Is(err, pebbledb.ErrClosed) {
		return fmt.Errorf("%w: %w", tracestore.ErrClosed, err)
	}
	return err
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
	if sp.ErrorType != "" {
		buf = set(svcPrefix(buf[:0], ks, idxExc, sp.ErrorType))
	}
	for i, ev := range sp.Events {
		if !slices.ContainsFunc(sp.Events[:i], func(e schemas.SpanEvent) bool { return e.Name == ev.Name }) {
			buf = set(svcPrefix(buf[:0], ks, idxEv, ev.Name))
		}
	}
}
