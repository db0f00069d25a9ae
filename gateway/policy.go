package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/mercury-apm/mercury/gateway/retry"
	"github.com/mercury-apm/mercury/gateway/upstream"
	"github.com/mercury-apm/mercury/internal/clock"
)

// class is what a try's outcome calls for.
type class uint8

const (
	classDone     class = iota // the response (or error) goes to the client as it is
	classRefused               // refused locally or no local instance: fail over, no local retry
	classOverload              // 503 with Retry-After: the region is busy, fail over, no local retry
	classTimeout               // local retry while the timeout rate is low, else fail over
	classCrash                 // a listed status or a connection error: local retry, then fail over
)

// retryPolicy is the route's RouteRetry, resolved for the hot path.
type retryPolicy struct {
	on                              bool
	status                          [600]bool // OnStatus as a table
	onConnect, onTimeout, onRefused bool
	local                           bool // retry on another local instance first
	timeoutBound                    float64
	timeouts                        *retry.Rate // local tries' timeout rate; nil without local retries
	budget                          *retry.Budget
}

var defaultRetryStatus = []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

func newRetryPolicy(rc RouteConfig, clk clock.Clock) (retryPolicy, error) {
	rr := rc.Retry
	p := retryPolicy{on: true, timeoutBound: rr.TimeoutRateBound}
	if p.timeoutBound == 0 {
		p.timeoutBound = 0.1
	}
	for _, code := range cmpSlice(rr.OnStatus, defaultRetryStatus) {
		p.status[code] = true // validated: 408, 429, 5xx
	}
	kinds := cmpSlice(rr.OnErrors, []string{RetryOnConnect, RetryOnTimeout, RetryOnRefused})
	p.onConnect, p.onTimeout, p.onRefused = slices.Contains(kinds, RetryOnConnect), slices.Contains(kinds, RetryOnTimeout), slices.Contains(kinds, RetryOnRefused)
	// Another local instance exists only with two or more.
	if p.local = !rr.NoLocalRetry && len(rc.Local.Instances) > 1; p.local {
		p.timeouts = retry.NewRate(0, clk)
	}
	var err error
	p.budget, err = retry.NewBudget(rr.BudgetPercent, rr.BudgetMinConcurrent)
	return p, err
}

func cmpSlice[T any](s, def []T) []T {
	if len(s) > 0 {
		return s
	}
	return def
}

// overloaded reports an upstream saying it is busy rather than broken.
func overloaded(resp *http.Response) bool {
	return resp.StatusCode == http.StatusServiceUnavailable && len(resp.Header["Retry-After"]) > 0
}

// classify says what a try's outcome calls for under the route's policy.
func (p *retryPolicy) classify(resp *http.Response, err error) class {
	switch {
	case err == nil && (resp.StatusCode >= len(p.status) || !p.status[resp.StatusCode]):
		return classDone
	case err == nil && overloaded(resp):
		return classOverload
	case err == nil:
		return classCrash
	case errors.Is(err, context.Canceled): // the client went away
		return classDone
	}
	if _, refused := err.(errRefused); refused { // tryLocal returns it unwrapped
		return onlyIf(p.onRefused, classRefused)
	}
	switch {
	case errors.Is(err, upstream.ErrNoHealthy):
		return onlyIf(p.onConnect, classRefused)
	case errors.Is(err, context.DeadlineExceeded):
		return onlyIf(p.onTimeout, classTimeout)
	}
	return onlyIf(p.onConnect, classCrash)
}

func onlyIf(listed bool, c class) class {
	if listed {
		return c
	}
	return classDone
}

// instanceFailed is what outlier detection counts against an instance: a
// 5xx that is not an overload signal, a timeout or a connection error.
func instanceFailed(resp *http.Response, err error) bool {
	if err != nil {
		return !errors.Is(err, context.Canceled)
	}
	return resp.StatusCode >= 500 && !overloaded(resp)
}

// localRetry reports whether a local try's outcome earns a try on another
// local instance: a crash always, a timeout only while the route's local
// timeout rate is below the bound (above it the seed's rule sends timeouts
// to the remote region instead).
func (p *retryPolicy) localRetry(c class) bool {
	return p.local && (c == classCrash || c == classTimeout && p.timeouts.Value() < p.timeoutBound)
}
