// Package breaker holds the two circuit breakers a route chooses between:
// Google SRE adaptive throttling, which sheds a growing fraction of requests
// as the accept ratio falls, and the classic closed/open/half-open breaker.
package breaker

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// ErrOpen is returned by Allow when the breaker rejects a request.
var ErrOpen = errors.New("breaker: open")

// State of a breaker. SRE throttling is Closed while it drops nothing and
// Open while its drop probability is above zero.
type State int

// Breaker states.
const (
	Closed State = iota
	Open
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "closed"
}

// Breaker is the common interface. done(err) reports the outcome; a non-nil
// err counts as a failure, so callers pass Failure(...) rather than raw errors.
type Breaker interface {
	Allow() (done func(error), err error)
	State() State
}

// OnStateChange is called on every transition, outside the breaker's lock,
// so it may emit events or take its own locks. It must be fast.
type OnStateChange func(from, to State)

// ErrUpstream marks an outcome that counts against the upstream.
var ErrUpstream = errors.New("breaker: upstream failure")

// Failure classifies one upstream exchange: only upstream failures — a 5xx
// status, a timeout or a connection error — count. 4xx are the client's fault
// and a client that went away says nothing about the upstream, so both return
// nil. status is 0 when no response arrived.
func Failure(status int, err error) error {
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		var nerr net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
			return err // timeouts keep their identity for degrade's timeout rate
		}
		return errors.Join(ErrUpstream, err)
	}
	if status >= http.StatusInternalServerError {
		return ErrUpstream
	}
	return nil
}
