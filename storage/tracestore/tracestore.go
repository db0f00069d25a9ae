// Package tracestore holds the trace storage contracts. HBase can fetch rows by key but cannot
// search, so storage is split in two: an Index answers "which traces match" and Rows hold the
// spans of a trace under its id. A Store joins one of each. Backends live in subpackages
// (pebblestore, esstore, hbasestore) and this package imports none of them.
package tracestore

import (
	"context"
	"fmt"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// TraceID is the 16-byte trace id.
type TraceID = schemas.TraceID

// Index finds traces. Implementations must be safe for concurrent use.
type Index interface {
	// IndexSpans makes spans searchable. Indexing a span twice is harmless (the entry is keyed
	// by trace id + span id). It returns nil only when the entries are durable.
	IndexSpans(ctx context.Context, spans []schemas.Span) error
	// Search returns the traces having at least one span that matches every condition of q,
	// newest matching span first, at most q.Limit (after defaults) distinct traces.
	Search(ctx context.Context, q Query) ([]TraceRef, error)
	// Services lists the services with indexed production spans (dyed spans are load tests
	// and stay out of pickers, as they stay out of searches by default), sorted, at most
	// MaxNames.
	Services(ctx context.Context) ([]string, error)
	// Operations lists the operations of a service's production spans, sorted, at most
	// MaxNames; an unknown service has none (no error).
	Operations(ctx context.Context, service string) ([]string, error)
	// CountSpans counts the indexed spans, production and dyed alike, that started in
	// [from, to), by service and start minute, sorted by service then minute. A span indexed
	// twice counts once. It answers `mercury audit`'s "how many reached the store".
	CountSpans(ctx context.Context, from, to time.Time) ([]SpanCount, error)
}

// SpanCount is how many spans of a service started in one minute.
type SpanCount struct {
	Service string
	Minute  int64 // Unix seconds of the minute's start
	Spans   int64
}

// CheckCountRange is the argument check of CountSpans, wrapping ErrInvalidQuery.
func CheckCountRange(from, to time.Time) error {
	if !from.Before(to) {
		return fmt.Errorf("%w: count range [%s, %s) is empty", ErrInvalidQuery, from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	}
	return nil
}

// MinuteOf is the start of the minute (Unix seconds) a span start falls in.
func MinuteOf(unixNano int64) int64 {
	m := unixNano / 60e9
	if unixNano < 0 && unixNano%60e9 != 0 {
		m--
	}
	return m * 60
}

// MaxNames bounds the lists Services and Operations return: they feed pickers (Grafana's,
// Jaeger's), and a service that names operations after raw URLs must not make them unbounded.
const MaxNames = 10000

// Rows stores spans by trace id. Implementations must be safe for concurrent use.
type Rows interface {
	// PutSpans stores spans; the cell is trace id + span id, so a replay overwrites with the
	// same bytes. It returns nil only when the spans are durable.
	PutSpans(ctx context.Context, spans []schemas.Span) error
	// GetTrace returns every span of a trace, dyed or not, in no particular order, or an error
	// wrapping ErrNotFound.
	GetTrace(ctx context.Context, id TraceID) ([]schemas.Span, error)
	// GetTraces fetches many traces in one round trip where the backend allows it. Traces
	// that do not exist are absent from the map; that is not an error.
	GetTraces(ctx context.Context, ids []TraceID) (map[TraceID][]schemas.Span, error)
}

// Retention drops old data.
type Retention interface {
	// DropBefore removes whole days that ended at or before cutoff (UTC days). Data is kept
	// per day, so a cutoff in the middle of a day keeps that day.
	DropBefore(ctx context.Context, cutoff time.Time) error
}

// SpanWriter is implemented by backends that hold both the index and the rows and can write
// both in one durable batch; Store.WriteSpans prefers it over two separate writes.
type SpanWriter interface {
	WriteSpans(ctx context.Context, spans []schemas.Span) error
}

// TraceRef is one search hit.
type TraceRef struct {
	TraceID TraceID
	// Time is the start of the newest matching span.
	Time time.Time
	Dyed bool
}

// TraceSummary describes one trace for a result list.
type TraceSummary struct {
	TraceID       TraceID
	RootService   string
	RootOperation string
	Start         time.Time
	Duration      time.Duration
	SpanCount     int
	ErrorCount    int
	// Services are sorted and unique.
	Services []string
	// BusinessKeys is the union over all spans; the first value seen wins for a repeated key.
	BusinessKeys []schemas.KV
	Dyed         bool
}

// IsError reports whether a span counts as failed: an ERROR status or an error type.
func IsError(s *schemas.Span) bool {
	return s.Status == schemas.StatusError || s.ErrorType != ""
}

// DayOf returns the UTC day (midnight) a span start falls in; backends partition by it.
func DayOf(unixNano int64) time.Time {
	return time.Unix(0, unixNano).UTC().Truncate(24 * time.Hour)
}
