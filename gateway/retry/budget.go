package retry

import (
	"errors"
	"sync/atomic"
)

// ErrBudget is returned by Budget.Acquire when retries already take their
// share of the active requests.
var ErrBudget = errors.New("retry: retry budget exhausted")

// Budget is Envoy's retry budget: the retries in progress may be at most
// Percent of the active requests, or MinConcurrent, whichever is more. It
// caps retry storms when everything fails at once, beside the adaptive
// window that caps cross-region probes per round.
type Budget struct {
	percent       float64
	minConcurrent int64
	retrying      atomic.Int64
}

// NewBudget returns a budget; percent in (0, 100] (default 20), minimum
// concurrent retries ≥ 0 (default 3 when both are zero).
func NewBudget(percent float64, minConcurrent int64) (*Budget, error) {
	if percent == 0 && minConcurrent == 0 {
		percent, minConcurrent = 20, 3
	}
	if percent < 0 || percent > 100 || minConcurrent < 0 {
		return nil, errors.New("retry: budget percent must be in [0,100] and min concurrency ≥ 0")
	}
	return &Budget{percent: percent, minConcurrent: minConcurrent}, nil
}

// Acquire takes a retry slot given the route's active requests; Release
// returns it.
func (b *Budget) Acquire(active int64) error {
	limit := max(b.minConcurrent, int64(b.percent*float64(active)/100))
	if b.retrying.Add(1) > limit {
		b.retrying.Add(-1)
		return ErrBudget
	}
	return nil
}

// Release returns a slot taken by Acquire.
func (b *Budget) Release() { b.retrying.Add(-1) }

// Retrying is the number of retries in progress.
func (b *Budget) Retrying() int64 { return b.retrying.Load() }
