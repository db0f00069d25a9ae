// Package deadline carries a request's remaining time budget across hops in
// one header, so every service on the path stops working when the caller has
// given up. The gateway writes it on every upstream attempt; agenthttp's
// server middleware turns it into the request context's deadline.
//
// The value is relative (whole milliseconds left), not an absolute time, so
// clock skew between hosts does not matter; each hop loses only its own
// transit time.
package deadline

import (
	"net/http"
	"strconv"
	"time"
)

// Header is the remaining budget in whole milliseconds, e.g. "250".
const Header = "X-Mercury-Budget-Ms"

// maxMillis bounds what a header may claim (one day), so an absurd value
// cannot overflow a time.Duration.
const maxMillis = 24 * 60 * 60 * 1000

// FromHeader reads the budget. ok is false when the header is absent or
// malformed (not a non-negative integer of at most a day), which callers
// treat as "no budget given": a bad optional header never fails a request.
func FromHeader(h http.Header) (d time.Duration, ok bool) {
	v := h[Header] // canonical key: no Get canonicalisation on the hot path
	if len(v) == 0 {
		return 0, false
	}
	ms, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || ms < 0 || ms > maxMillis {
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}

// Format renders d as the header value, rounded down to whole milliseconds
// (never promising more than is left); anything below 1 ms is "0".
func Format(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10)
}
