package tracestore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mercury-apm/mercury/schemas"
)

// Dyed says how a query treats dyed (load-test) spans, which live in shadow indices/tables.
type Dyed uint8

const (
	// DyedExclude searches production data only (the zero value).
	DyedExclude Dyed = iota
	// DyedInclude searches production and shadow data.
	DyedInclude
	// DyedOnly searches shadow data only.
	DyedOnly
)

func (d Dyed) String() string {
	switch d {
	case DyedExclude:
		return "exclude"
	case DyedInclude:
		return "include"
	case DyedOnly:
		return "only"
	}
	return fmt.Sprintf("Dyed(%d)", uint8(d))
}

// ParseDyed parses "exclude", "include" or "only"; "" is exclude.
func ParseDyed(s string) (Dyed, error) {
	switch s {
	case "", "exclude":
		return DyedExclude, nil
	case "include":
		return DyedInclude, nil
	case "only":
		return DyedOnly, nil
	}
	return 0, fmt.Errorf("%w: dyed %q: want exclude, include or only", ErrInvalidQuery, s)
}

// Search limits.
const (
	DefaultLimit = 20
	MaxLimit     = 1000
	// MaxBusinessKeys bounds the AND terms of one query.
	MaxBusinessKeys = 8
	// MaxTermBytes bounds every string a query matches on.
	MaxTermBytes = 512
)

// Query selects traces. Every condition must hold on one and the same span (as in Jaeger):
// "order_id=42 AND min duration 1s" finds traces with a span carrying order_id=42 that took
// at least a second, not a trace where one span has the key and another is slow. A query
// must name at least one business key, a service, an error type or an event.
type Query struct {
	// BusinessKeys must all be present on the span with exactly these values.
	BusinessKeys []schemas.KV
	Service      string
	// Operation needs Service.
	Operation string
	// ErrorType is the span's error (exception) type, exactly ("*payment.DeclinedError").
	ErrorType string
	// Event is the name of an event the span carries ("exception", "cache.miss", ...): the
	// seed's "find the call again by the event it raised".
	Event string
	// Start and End bound the span start, inclusive; zero means unbounded.
	Start, End time.Time
	// MinDuration and MaxDuration bound the span duration, inclusive; zero means unbounded.
	MinDuration, MaxDuration time.Duration
	ErrorsOnly               bool
	Dyed                     Dyed
	// Limit is the number of traces wanted: 0 means DefaultLimit, at most MaxLimit.
	Limit int
}

// ParseBusinessKey parses "key=value" (the CLI's form) or "key:value" (the API's): the key
// ends at the first '=' or ':', and the value may hold either.
func ParseBusinessKey(s string) (schemas.KV, error) {
	i := strings.IndexAny(s, "=:")
	if i <= 0 {
		return schemas.KV{}, fmt.Errorf("%w: business key %q: want key=value", ErrInvalidQuery, s)
	}
	return schemas.KV{Key: s[:i], Value: s[i+1:]}, nil
}

// Validate reports the first problem with q, wrapping ErrInvalidQuery.
func (q *Query) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidQuery}, args...)...))
	}
	if len(q.BusinessKeys) == 0 && q.Service == "" && q.ErrorType == "" && q.Event == "" {
		bad("name a business key, a service, an error type or an event")
	}
	if len(q.BusinessKeys) > MaxBusinessKeys {
		bad("%d business keys, at most %d", len(q.BusinessKeys), MaxBusinessKeys)
	}
	for _, kv := range q.BusinessKeys {
		if kv.Key == "" {
			bad("empty business key name")
		}
		checkTerm(bad, "business key", kv.Key)
		checkTerm(bad, "business key value", kv.Value)
	}
	checkTerm(bad, "service", q.Service)
	checkTerm(bad, "operation", q.Operation)
	checkTerm(bad, "error type", q.ErrorType)
	checkTerm(bad, "event", q.Event)
	if q.Operation != "" && q.Service == "" {
		bad("operation %q needs a service", q.Operation)
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.End.Before(q.Start) {
		bad("end %s before start %s", q.End.Format(time.RFC3339), q.Start.Format(time.RFC3339))
	}
	if q.MinDuration < 0 || q.MaxDuration < 0 {
		bad("negative duration bound")
	}
	if q.MaxDuration != 0 && q.MaxDuration < q.MinDuration {
		bad("max duration %s below min duration %s", q.MaxDuration, q.MinDuration)
	}
	if q.Dyed > DyedOnly {
		bad("%s", q.Dyed)
	}
	if q.Limit < 0 || q.Limit > MaxLimit {
		bad("limit %d outside 0..%d", q.Limit, MaxLimit)
	}
	return errors.Join(errs...)
}

func checkTerm(bad func(string, ...any), what, s string) {
	switch {
	case len(s) > MaxTermBytes:
		bad("%s longer than %d bytes", what, MaxTermBytes)
	case !utf8.ValidString(s):
		bad("%s is not UTF-8", what)
	}
}

// EffectiveLimit is Limit with the default applied.
func (q *Query) EffectiveLimit() int {
	if q.Limit == 0 {
		return DefaultLimit
	}
	return q.Limit
}

// StartNano and EndNano are the inclusive span-start bounds in Unix nanoseconds.
func (q *Query) StartNano() int64 {
	if q.Start.IsZero() {
		return minInt64
	}
	return q.Start.UnixNano()
}

// EndNano: see StartNano.
func (q *Query) EndNano() int64 {
	if q.End.IsZero() {
		return maxInt64
	}
	return q.End.UnixNano()
}

const (
	minInt64 = -1 << 63
	maxInt64 = 1<<63 - 1
)

// Match reports whether span s satisfies every condition of q, the dye mode included.
// Backends that evaluate filters in Go share it, so all of them agree on the semantics.
func (q *Query) Match(s *schemas.Span) bool {
	switch {
	case q.Dyed == DyedExclude && s.Dyed, q.Dyed == DyedOnly && !s.Dyed:
		return false
	case q.Service != "" && s.Service != q.Service,
		q.Operation != "" && s.Operation != q.Operation,
		q.ErrorType != "" && s.ErrorType != q.ErrorType,
		q.Event != "" && !slices.ContainsFunc(s.Events, func(e schemas.SpanEvent) bool { return e.Name == q.Event }):
		return false
	case s.StartUnixNano < q.StartNano() || s.StartUnixNano > q.EndNano():
		return false
	case !q.MatchDurationError(s.DurationNano, IsError(s)):
		return false
	}
	for _, kv := range q.BusinessKeys {
		if v, ok := schemas.Get(s.BusinessKeys, kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// MatchDurationError checks the duration bounds and the errors-only flag.
func (q *Query) MatchDurationError(durationNano int64, isError bool) bool {
	if q.ErrorsOnly && !isError {
		return false
	}
	if q.MinDuration > 0 && durationNano < int64(q.MinDuration) {
		return false
	}
	return q.MaxDuration == 0 || durationNano <= int64(q.MaxDuration)
}
