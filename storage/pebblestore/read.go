package pebblestore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/pebbledb"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// GetTrace returns every span of a trace. Spans are stored in the day they started, so a
// trace crossing midnight lives in two databases: see GetTraces for how days are probed. A
// probe of a day without the trace costs a bloom-filter check per table (the comparer's Split
// makes t/<trace_id>/ the filter prefix).
func (s *Store) GetTrace(ctx context.Context, id tracestore.TraceID) ([]schemas.Span, error) {
	m, err := s.GetTraces(ctx, []tracestore.TraceID{id})
	if err != nil {
		return nil, err
	}
	spans, ok := m[id]
	if !ok {
		return nil, fmt.Errorf("pebblestore: trace %s: %w", id, tracestore.ErrNotFound)
	}
	return spans, nil
}

// GetTraces fetches many traces with one iterator per day and keyspace. Days are probed
// newest first; once a trace is found in a day, only the day before is still probed for it (a
// trace crossing midnight), so older days cost nothing. The shadow keyspace is probed only
// for traces missing from production: the dye mark belongs to the whole trace.
func (s *Store) GetTraces(ctx context.Context, ids []tracestore.TraceID) (map[tracestore.TraceID][]schemas.Span, error) {
	out := make(map[tracestore.TraceID][]schemas.Span, len(ids))
	pending := slices.Clone(ids)
	slices.SortFunc(pending, func(a, b tracestore.TraceID) int { return slices.Compare(a[:], b[:]) })
	pending = slices.Compact(pending)
	err := closed(s.days.Read(func(v pebbledb.View) error {
		for _, ks := range []string{"", shadowPfx} {
			foundIn := map[tracestore.TraceID]int64{}
			for _, d := range v.Newest() {
				// Spans start within a day of each other, so a trace found in day f is not
				// older than day f-1.
				live := pending[:0:0]
				for _, id := range pending {
					if f, ok := foundIn[id]; !ok || d >= f-24*3600 {
						live = append(live, id)
					}
				}
				if len(live) == 0 {
					break
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := s.probeDay(v.DB(d), ks, live, func(id tracestore.TraceID, sp schemas.Span) {
					if _, ok := foundIn[id]; !ok {
						foundIn[id] = d
					}
					out[id] = append(out[id], sp)
				}); err != nil {
					return err
				}
			}
			rest := pending[:0]
			for _, id := range pending {
				if _, ok := out[id]; !ok {
					rest = append(rest, id)
				}
			}
			pending = rest
		}
		return nil
	}))
	if err != nil {
		return nil, fmt.Errorf("pebblestore: get traces: %w", err)
	}
	return out, nil
}

// probeDay reads the rows of sorted ids in one day and keyspace with one iterator.
func (s *Store) probeDay(db *pebble.DB, ks string, ids []tracestore.TraceID, emit func(tracestore.TraceID, schemas.Span)) error {
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	var key []byte
	for _, id := range ids {
		key = rowPrefix(key[:0], ks, id)
		for ok := it.SeekPrefixGE(key); ok; ok = it.Next() {
			var sp schemas.Span
			if s.DecodeRow(it.Value(), &sp) {
				emit(id, sp)
			}
		}
	}
	return it.Close()
}

// Search walks the days newest first and, in each, reverse-scans one index prefix between
// the query's time bounds. The prefix is chosen by selectivity: first business key, else
// the error type, else the event, else service+operation, else errors of the service, else
// the service. Duration and error filters are answered from the entry value; any further term
// (more business keys, service or operation next to a business key) is a point lookup of that
// term's entry for the same span (index keys end with ts/trace/span), so the index alone
// answers every query.
func (s *Store) Search(ctx context.Context, q tracestore.Query) ([]tracestore.TraceRef, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	limit := q.EffectiveLimit()
	var keyspaces []string
	switch q.Dyed {
	case tracestore.DyedExclude:
		keyspaces = []string{""}
	case tracestore.DyedOnly:
		keyspaces = []string{shadowPfx}
	default:
		keyspaces = []string{"", shadowPfx}
	}
	firstDay, lastDay := tracestore.DayOf(q.StartNano()).Unix(), tracestore.DayOf(q.EndNano()).Unix()
	var out []tracestore.TraceRef
	seen := map[tracestore.TraceID]bool{}
	err := closed(s.days.Read(func(v pebbledb.View) error {
		for _, d := range v.Newest() {
			if d < firstDay || d > lastDay {
				continue
			}
			var day []tracestore.TraceRef
			for _, ks := range keyspaces {
				hits, err := scanDay(ctx, v.DB(d), ks, &q, limit-len(out), seen)
				if err != nil {
					return err
				}
				day = append(day, hits...)
			}
			// Two keyspaces interleave in time; a trace is in only one of them (the dye mark
			// follows the trace), so merging needs no further dedup.
			slices.SortStableFunc(day, func(a, b tracestore.TraceRef) int { return cmp.Compare(b.Time.UnixNano(), a.Time.UnixNano()) })
			for _, r := range day {
				if len(out) == limit {
					return nil
				}
				seen[r.TraceID] = true
				out = append(out, r)
			}
			if len(out) == limit {
				return nil
			}
		}
		return nil
	}))
	if err != nil {
		return nil, fmt.Errorf("pebblestore: search: %w", err)
	}
	return out, nil
}

// scanDay returns up to want new traces from one day and keyspace, newest first.
func scanDay(ctx context.Context, db *pebble.DB, ks string, q *tracestore.Query, want int, seen map[tracestore.TraceID]bool) ([]tracestore.TraceRef, error) {
	// The scan runs over the most selective term's prefix; also holds the other terms, whose
	// entry for the same span (same tail) must exist too.
	var terms [][]byte
	for _, kv := range q.BusinessKeys {
		terms = append(terms, bkPrefix(nil, ks, kv))
	}
	if q.ErrorType != "" {
		terms = append(terms, svcPrefix(nil, ks, idxExc, q.ErrorType))
	}
	if q.Event != "" {
		terms = append(terms, svcPrefix(nil, ks, idxEv, q.Event))
	}
	switch {
	case q.Operation != "":
		terms = append(terms, opPrefix(nil, ks, q.Service, q.Operation))
	case q.Service != "" && q.ErrorsOnly && len(terms) == 0:
		terms = append(terms, svcPrefix(nil, ks, idxErr, q.Service))
	case q.Service != "":
		terms = append(terms, svcPrefix(nil, ks, idxSvc, q.Service))
	}
	prefix, also := terms[0], terms[1:]
	lower := appendTS(slices.Clip(prefix), q.StartNano())
	upper := prefixEnd(prefix)
	if end := q.EndNano(); end < 1<<63-1 {
		upper = appendTS(slices.Clip(prefix), end+1)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	var (
		hits  []tracestore.TraceRef
		local = map[tracestore.TraceID]bool{}
		probe []byte
		n     int
	)
	for ok := it.Last(); ok && len(hits) < want; ok = it.Prev() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, errors.Join(err, it.Close())
			}
		}
		key := it.Key()
		t, ok := parseTail(key)
		if !ok || len(key) != len(prefix)+tailLen || seen[t.trace] || local[t.trace] {
			continue
		}
		dur, isErr, ok := parseEntry(it.Value())
		if !ok || !q.MatchDurationError(dur, isErr) {
			continue
		}
		if len(also) > 0 {
			match, err := hasAll(db, also, key[len(key)-tailLen:], &probe)
			if err != nil {
				return nil, errors.Join(err, it.Close())
			}
			if !match {
				continue
			}
		}
		local[t.trace] = true
		hits = append(hits, tracestore.TraceRef{TraceID: t.trace, Time: timeOf(t.ts), Dyed: ks == shadowPfx})
	}
	return hits, it.Close()
}

// hasAll reports whether every prefix+tail key exists: the same span carries those terms.
func hasAll(db *pebble.DB, prefixes [][]byte, tail []byte, buf *[]byte) (bool, error) {
	for _, p := range prefixes {
		*buf = append(append((*buf)[:0], p...), tail...)
		_, closer, err := db.Get(*buf)
		if errors.Is(err, pebble.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		closer.Close()
	}
	return true, nil
}

func timeOf(unixNano int64) time.Time { return time.Unix(0, unixNano).UTC() }

// Services lists the services of the production i/svc/ entries of every day.
func (s *Store) Services(ctx context.Context) ([]string, error) {
	return s.names(ctx, []byte(idxSvc))
}

// Operations lists the operations of the production i/op/<service>/ entries of every day.
func (s *Store) Operations(ctx context.Context, service string) ([]string, error) {
	return s.names(ctx, svcPrefix(nil, "", idxOp, service))
}

// names collects the distinct names that follow prefix in index keys (prefix/<name>/<tail>)
// over every day, sorted, at most MaxNames. Each day costs one seek per name: after reading a
// name the iterator jumps past all of its entries.
func (s *Store) names(ctx context.Context, prefix []byte) ([]string, error) {
	set := map[string]struct{}{}
	err := closed(s.days.Read(func(v pebbledb.View) error {
		for _, d := range v.Newest() {
			if len(set) >= tracestore.MaxNames {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := distinctNames(v.DB(d), prefix, set); err != nil {
				return err
			}
		}
		return nil
	}))
	if err != nil {
		return nil, fmt.Errorf("pebblestore: names: %w", err)
	}
	out := slices.Sorted(maps.Keys(set))
	return out[:min(len(out), tracestore.MaxNames)], nil
}

func distinctNames(db *pebble.DB, prefix []byte, set map[string]struct{}) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok && len(set) < tracestore.MaxNames; {
		key := it.Key()
		end := len(key) - tailLen - 1 // the '/' between the name and the tail
		if end < len(prefix) || key[end] != '/' {
			ok = it.Next()
			continue
		}
		set[unescape(key[len(prefix):end])] = struct{}{}
		ok = it.SeekGE(prefixEnd(key[:end+1]))
	}
	return it.Close()
}

// CountSpans walks i/svc/ of every day overlapping [from, to), both keyspaces: one entry per
// span, its start in the key, so no span is read. Per service it seeks to from and stops at
// to, then skips to the next service.
func (s *Store) CountSpans(ctx context.Context, from, to time.Time) ([]tracestore.SpanCount, error) {
	if err := tracestore.CheckCountRange(from, to); err != nil {
		return nil, err
	}
	lo, hi := from.UnixNano(), to.UnixNano()
	firstDay, lastDay := tracestore.DayOf(lo).Unix(), tracestore.DayOf(hi-1).Unix()
	counts := map[string]map[int64]int64{}
	err := closed(s.days.Read(func(v pebbledb.View) error {
		for _, d := range v.Newest() {
			if d < firstDay || d > lastDay {
				continue
			}
			for _, ks := range []string{"", shadowPfx} {
				if err := ctx.Err(); err != nil {
					return err
				}
				if err := countDay(v.DB(d), ks, lo, hi, counts); err != nil {
					return err
				}
			}
		}
		return nil
	}))
	if err != nil {
		return nil, fmt.Errorf("pebblestore: count spans: %w", err)
	}
	var out []tracestore.SpanCount
	for _, svc := range slices.Sorted(maps.Keys(counts)) {
		for _, m := range slices.Sorted(maps.Keys(counts[svc])) {
			out = append(out, tracestore.SpanCount{Service: svc, Minute: m, Spans: counts[svc][m]})
		}
	}
	return out, nil
}

func countDay(db *pebble.DB, ks string, lo, hi int64, counts map[string]map[int64]int64) error {
	pfx := svcPrefix(nil, ks, idxSvc, "")
	pfx = pfx[:len(pfx)-1] // ks + "i/svc/"
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: pfx, UpperBound: prefixEnd(pfx)})
	if err != nil {
		return err
	}
	var seek []byte
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) < len(pfx)+1+tailLen {
			ok = it.Next() // not an entry of this layout
			continue
		}
		// The escaped service holds no '/', so it ends right before the fixed-size tail.
		svcPfx := slices.Clone(k[:len(k)-tailLen])
		service := unescape(svcPfx[len(pfx) : len(svcPfx)-1])
		byMinute := counts[service]
		if byMinute == nil {
			byMinute = map[int64]int64{}
			counts[service] = byMinute
		}
		seek = appendTS(append(seek[:0], svcPfx...), lo)
		for ok = it.SeekGE(seek); ok; ok = it.Next() {
			k = it.Key()
			if len(k) != len(svcPfx)+tailLen || !bytes.HasPrefix(k, svcPfx) {
				break
			}
			t, _ := parseTail(k)
			if t.ts >= hi {
				break
			}
			byMinute[tracestore.MinuteOf(t.ts)]++
		}
		if len(byMinute) == 0 {
			delete(counts, service)
		}
		ok = it.SeekGE(prefixEnd(svcPfx))
	}
	return it.Close()
}
