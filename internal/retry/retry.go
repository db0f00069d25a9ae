// Package retry is the one error classification and the one backoff every daemon and store
// uses: an error is permanent (repeating cannot fix it: a poison record, a rejected
// document, a bad request) or retryable (overload, 429, 5xx, timeouts, a dead connection).
// Consumers dead-letter permanent failures and retry the rest; stores wrap their errors so
// the consumer can tell.
package retry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

var (
	// ErrRetryable marks failures that may pass on a later attempt.
	ErrRetryable = errors.New("retryable")
	// ErrPermanent marks failures that repeating will not fix.
	ErrPermanent = errors.New("permanent")
)

// IsRetryable reports whether err was marked retryable.
func IsRetryable(err error) bool { return errors.Is(err, ErrRetryable) }

// IsPermanent reports whether err was marked permanent.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// Retryable wraps err as retryable (nil stays nil).
func Retryable(err error) error {
	if err == nil || errors.Is(err, ErrRetryable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrRetryable, err)
}

// Permanent wraps err as permanent (nil stays nil).
func Permanent(err error) error {
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
		return Retryable(err)
	}
	return Permanent(err)
}

// Backoff is a bounded exponential backoff: Min, 2·Min, … capped at Max. The zero value
// waits 100 ms doubling to 10 s. It is a value: copy it per retry loop.
type Backoff struct {
	Min, Max time.Duration
	// Attempts bounds Do to this many tries in all (0: until success, a permanent error or
	// ctx's end).
	Attempts int
	cur      time.Duration
}

// StoreBackoff is what a store client retries a request with before it reports the failure
// to its caller, which has its own, unbounded, retry: a few quick tries absorb a blip.
var StoreBackoff = Backoff{Min: 50 * time.Millisecond, Max: 2 * time.Second, Attempts: 5}

// Next returns the next delay and doubles it for the time after.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
		if b.cur <= 0 {
			b.cur = 100 * time.Millisecond
		}
	}
	d := b.cur
	limit := b.Max
	if limit <= 0 {
		limit = 10 * time.Second
	}
	b.cur = min(b.cur*2, limit)
	return min(d, limit)
}

// Reset starts over at Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Wait sleeps for Next() or until ctx ends.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Do runs fn until it succeeds, fails with an error not marked retryable, the attempts run
// out or ctx ends. The last error is returned as is, so its classification survives; an
// interrupted wait returns it marked retryable.
func (b Backoff) Do(ctx context.Context, fn func() error) error {
	for i := 1; ; i++ {
		err := fn()
		if err == nil || !IsRetryable(err) || (b.Attempts > 0 && i >= b.Attempts) {
			return err
		}
		if werr := b.Wait(ctx); werr != nil {
			return Retryable(fmt.Errorf("%w (after: %w)", werr, err))
		}
	}
}

// Sleep waits for d or until ctx ends, whichever comes first, and returns ctx.Err() in the
// second case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
