package tracestore

import (
	"errors"
)

// Sentinel errors. Backends wrap them with %w so callers test with errors.Is.
var (
	// ErrNotFound: the trace has no stored span.
	ErrNotFound = errors.New("tracestore: trace not found")
	// ErrInvalidQuery: Query.Validate failed; the caller must fix the query.
	ErrInvalidQuery = errors.New("tracestore: invalid query")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("tracestore: closed")
)
