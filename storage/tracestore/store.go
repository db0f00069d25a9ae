package tracestore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// Store joins an Index and Rows; the two may be the same backend (Pebble) or different ones
// (Elasticsearch + HBase).
type Store struct {
	Index Index
	Rows  Rows
}

// Undecodable is the number of stored spans the backends' readers skipped (see RowDecoder).
func (s *Store) Undecodable() int64 {
	type counter interface{ Undecodable() int64 }
	var n int64
	if c, ok := s.Rows.(counter); ok {
		n += c.Undecodable()
	}
	if c, ok := s.Index.(counter); ok && any(s.Index) != any(s.Rows) {
		n += c.Undecodable()
	}
	return n
}

// New returns a Store over idx and rows.
func New(idx Index, rows Rows) *Store { return &Store{Index: idx, Rows: rows} }

// WriteSpans stores and indexes spans, the two backends in parallel (Elasticsearch and HBase
// each take a round trip; there is no reason to pay both in turn). It returns nil only when
// both acknowledged; after an error the caller writes the batch again, which is idempotent.
// Readers never see a half-written batch as a result: FindTraces drops index hits whose rows
// have not landed yet. When the index and the rows are one backend that implements
// SpanWriter, it writes once.
func (s *Store) WriteSpans(ctx context.Context, spans []schemas.Span) error {
	if w, ok := s.Rows.(SpanWriter); ok && any(s.Rows) == any(s.Index) {
		return w.WriteSpans(ctx, spans)
	}
	rowsErr := make(chan error, 1)
	go func() { rowsErr <- s.Rows.PutSpans(ctx, spans) }()
	idxErr := s.Index.IndexSpans(ctx, spans)
	return errors.Join(<-rowsErr, idxErr)
}

// FindTraces is SearchTraces, each trace summarized.
func (s *Store) FindTraces(ctx context.Context, q Query) ([]TraceSummary, error) {
	found, err := s.SearchTraces(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]TraceSummary, 0, len(found))
	for _, f := range found {
		out = append(out, Summarize(f.Ref.TraceID, f.Spans))
	}
	return out, nil
}

// Found is one trace SearchTraces found, with every span of it.
type Found struct {
	Ref   TraceRef
	Spans []schemas.Span
}

// SearchTraces validates q, searches the index and fetches the hits with one multi-get, in
// the index order (newest first). A hit whose rows are gone (retention raced the search) is
// dropped.
func (s *Store) SearchTraces(ctx context.Context, q Query) ([]Found, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	refs, err := s.Index.Search(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if len(refs) == 0 {
		return nil, nil
	}
	ids := make([]TraceID, len(refs))
	for i, r := range refs {
		ids[i] = r.TraceID
	}
	traces, err := s.Rows.GetTraces(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("get traces: %w", err)
	}
	out := make([]Found, 0, len(refs))
	for _, r := range refs {
		if spans := traces[r.TraceID]; len(spans) > 0 {
			out = append(out, Found{Ref: r, Spans: spans})
		}
	}
	return out, nil
}

// Summarize builds the summary of one trace. The root is the span without a parent (the
// earliest if several); when the root was not sampled or not yet written, the earliest span
// stands in.
func Summarize(id TraceID, spans []schemas.Span) TraceSummary {
	sum := TraceSummary{TraceID: id, SpanCount: len(spans)}
	if len(spans) == 0 {
		return sum
	}
	root := -1
	first, end := spans[0].StartUnixNano, spans[0].StartUnixNano+spans[0].DurationNano
	services := make([]string, 0, 4)
	for i := range spans {
		sp := &spans[i]
		first = min(first, sp.StartUnixNano)
		end = max(end, sp.StartUnixNano+sp.DurationNano)
		if IsError(sp) {
			sum.ErrorCount++
		}
		sum.Dyed = sum.Dyed || sp.Dyed
		services = append(services, sp.Service)
		for _, kv := range sp.BusinessKeys {
			if _, ok := schemas.Get(sum.BusinessKeys, kv.Key); !ok {
				sum.BusinessKeys = append(sum.BusinessKeys, kv)
			}
		}
		if sp.ParentSpanID.IsZero() && (root < 0 || sp.StartUnixNano < spans[root].StartUnixNano) {
			root = i
		}
	}
	if root < 0 {
		root = slices.IndexFunc(spans, func(sp schemas.Span) bool { return sp.StartUnixNano == first })
	}
	slices.Sort(services)
	sum.Services = slices.Compact(services)
	slices.SortFunc(sum.BusinessKeys, func(a, b schemas.KV) int { return cmp.Compare(a.Key, b.Key) })
	sum.RootService, sum.RootOperation = spans[root].Service, spans[root].Operation
	sum.Start = time.Unix(0, first).UTC()
	sum.Duration = time.Duration(end - first)
	return sum
}
