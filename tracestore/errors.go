package tracestore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors. Backends wrap them with %w so callers test with errors.Is.
var (
	// ErrNotFound: the trace has no stored span.
	ErrNotFound = errors.New("tracestore: trace not found")
	// ErrInvalidQuery: Query.Validate failed; the caller must fix the query.
	ErrInvalidQuery = errors.New("tracestore: invalid query")
	// ErrRetryable marks failures that may pass on a later attempt (overload, 429, 5xx,
	// timeouts, connection errors). The collector retries these with backoff.
	ErrRetryable = errors.New("tracestore: retryable")
	// ErrPermanent marks failures that repeating will not fix (rejected document, bad
	// request, corrupt data); the collector must not spin on them.
	ErrPermanent = errors.New("tracestore: permanent")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("tracestore: closed")
)

// Retryable reports whether err is worth retrying.
func Retryable(err error) bool { return errors.Is(err, ErrRetryable) }

// AsRetryable wraps err as retryable (nil stays nil).
func AsRetryable(err error) error {
	if err == nil || errors.Is(err, ErrRetryable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrRetryable, err)
}

// AsPermanent wraps err as permanent (nil stays nil).
func AsPermanent(err error) error {
	if err == nil || errors.Is(err, ErrPermanent) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// RetryableStatus reports whether an HTTP status means "try again": 408, 429 and 5xx
// except 501 (Not Implemented) and 505.
func RetryableStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return true
	case code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported:
		return false
	}
	return code >= 500
}

// StatusError classifies a failed HTTP exchange by its status.
func StatusError(code int, what string) error {
	err := fmt.Errorf("%s: HTTP %d", what, code)
	if RetryableStatus(code) {
		return AsRetryable(err)
	}
	return AsPermanent(err)
}

// Backoff is the retry policy shared by the HTTP backends.
type Backoff struct {
	// Attempts is the total number of tries, at least 1 (0 means 5).
	Attempts int
	// Initial is the first wait (0 means 50 ms); it doubles up to Max (0 means 2 s).
	Initial, Max time.Duration
}

// Do runs fn until it succeeds, fails with a non-retryable error, the attempts run out or ctx
// ends. The last error is returned as is, so its classification survives.
func (b Backoff) Do(ctx context.Context, fn func() error) error {
	attempts, wait, max := b.Attempts, b.Initial, b.Max
	if attempts <= 0 {
		attempts = 5
	}
	if wait <= 0 {
		wait = 50 * time.Millisecond
	}
	if max <= 0 {
		max = 2 * time.Second
	}
	var err error
	for i := 0; i < attempts; i++ {
		if err = fn(); err == nil || !Retryable(err) || i == attempts-1 {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return AsRetryable(fmt.Errorf("%w (after: %w)", ctx.Err(), err))
		case <-t.C:
		}
		wait = min(2*wait, max)
	}
	return err
}
