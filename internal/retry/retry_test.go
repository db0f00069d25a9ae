package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"
)

func TestBackoff(t *testing.T) {
	b := retry.Backoff{Attempts: 3, Min: time.Microsecond}
	n := 0
	err := b.Do(context.Background(), func() error { n++; return retry.Retryable(errors.New("busy")) })
	if n != 3 || !retry.IsRetryable(err) {
		t.Fatalf("retryable: %d tries, %v", n, err)
	}
	n = 0
	err = b.Do(context.Background(), func() error { n++; return retry.Permanent(errors.New("bad")) })
	if n != 1 || !errors.Is(err, retry.ErrPermanent) {
		t.Fatalf("permanent: %d tries, %v", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = retry.Backoff{Attempts: 3, Min: time.Hour}.Do(ctx, func() error { return retry.Retryable(errors.New("busy")) })
	if !errors.Is(err, context.Canceled) || !retry.IsRetryable(err) {
		t.Fatalf("cancelled: %v", err)
	}
	for code, want := range map[int]bool{429: true, 408: true, 500: true, 503: true, 501: false, 400: false, 404: false} {
		if retry.RetryableStatus(code) != want {
			t.Errorf("RetryableStatus(%d) != %v", code, want)
		}
	}
}

func TestBackoffIsBoundedExponential(t *testing.T) {
	b := retry.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{10, 20, 40, 50, 50}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v", got)
		}
	}
	b.Reset()
	if d := b.Next(); d != 10*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
	var zero retry.Backoff
	if d := zero.Next(); d != 100*time.Millisecond {
		t.Fatalf("zero value starts at %v", d)
	}
}

func TestStatusClassification(t *testing.T) {
	for code, want := range map[int]bool{408: true, 429: true, 500: true, 503: true, 501: false, 505: false, 400: false, 404: false} {
		if got := retry.IsRetryable(retry.StatusError(code, "x")); got != want {
			t.Errorf("status %d retryable = %v", code, got)
		}
		if got := retry.IsPermanent(retry.StatusError(code, "x")); got == want {
			t.Errorf("status %d permanent = %v", code, got)
		}
	}
}
