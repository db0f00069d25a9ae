package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/mercury-apm/mercury/gateway/breaker"
	"github.com/mercury-apm/mercury/gateway/upstream"
	"github.com/mercury-apm/mercury/internal/deadline"
)

// routeTransport is the route's RoundTripper: the local attempt behind rate
// limit, breaker and dynamic timeout, then at most one failover to the remote
// region under the retry window. Doing this below httputil.ReverseProxy means
// nothing reached the client before the failover decision.
type routeTransport route

// errRefused wraps a local limiter or breaker refusal so failover can tell it
// from an upstream failure.
type errRefused struct{ err error }

func (e errRefused) Error() string { return e.err.Error() }
func (e errRefused) Unwrap() error { return e.err }

func (t *routeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := (*route)(t)
	st := stateOf(req.Context())
	resp, err := r.tryLocal(req, st)
	_, refused := err.(errRefused) // tryLocal returns it unwrapped
	localFailed := refused || breaker.Failure(status(resp), err) != nil
	if !localFailed || r.window == nil || errors.Is(err, context.Canceled) {
		return resp, err
	}
	result := r.mayFailover(req)
	if result != "" {
		r.m.failover(result)
		return resp, err
	}
	now := time.Now()
	if st.deadline.Sub(now) < minTry {
		r.m.failover("no_budget")
		return resp, err
	}
	release, werr := r.window.Acquire()
	if werr != nil {
		r.m.failover("window_exhausted")
		return resp, err
	}
	// The replay gets its own header map: the local attempt's transport may
	// still hold the old one, and attempt writes the budget header.
	body := req.Body
	if req.GetBody != nil {
		var berr error
		if body, berr = req.GetBody(); berr != nil {
			release(berr)
			return resp, err
		}
	}
	req = req.Clone(req.Context())
	req.Body = body
	if resp != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
		resp.Body.Close()
	}
	st.retried = !refused
	st.failedOver = true
	resp, err = r.attempt(req, r.remote, now, st.tryDeadline(now, r.remoteTimeout), new(attemptState))
	if !errors.Is(err, upstream.ErrNoHealthy) {
		st.upstream = UpstreamRemote
	}
	fail := breaker.Failure(status(resp), err)
	release(fail)
	if fail != nil {
		r.m.failover("failed")
	} else {
		r.m.failover("ok")
	}
	return resp, err
}

// mayFailover returns "" when a failover may be tried, else why not.
func (r *route) mayFailover(req *http.Request) string {
	switch {
	case !r.g.retries.Enabled(r.cfg.Service):
		return "switched_off"
	case !r.replayable(req):
		return "not_idempotent"
	case req.Body != nil && req.Body != http.NoBody && req.GetBody == nil:
		return "body_too_large"
	}
	return ""
}

func status(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// tryLocal runs the local-side admission (rate limit, breaker) and the
// local attempt under the dynamic timeout.
func (r *route) tryLocal(req *http.Request, st *reqState) (*http.Response, error) {
	if r.window != nil {
		r.window.Local()
	}
	if r.limiter != nil {
		_, err := r.limiter.Allow()
		r.limiterEdge(&r.limitEdge, shedRateLimit, err != nil)
		if err != nil {
			st.shedBy = shedRateLimit
			r.m.shedBy(shedRateLimit)
			return nil, errRefused{err}
		}
	}
	var done func(error)
	if r.breaker != nil {
		var err error
		if done, err = r.breaker.Allow(); err != nil {
			st.shedBy = shedBreaker
			r.m.shedBy(shedBreaker)
			return nil, errRefused{err}
		}
	}
	d := r.localTimeout
	if r.dyn != nil {
		d = r.dyn.Timeout()
	}
	start := time.Now() // one reading for the deadline and the EMA's latency
	resp, err := r.attempt(req, r.local, start, st.tryDeadline(start, d), &st.local)
	if r.dyn != nil {
		r.dyn.Observe(time.Since(start)) // headers in, or the attempt failed
	}
	if done != nil {
		done(breaker.Failure(status(resp), err))
	}
	if !errors.Is(err, upstream.ErrNoHealthy) {
		st.upstream = UpstreamLocal
	}
	return resp, err
}

// minTry is the least budget worth starting another try with.
const minTry = time.Millisecond

// errBudgetSpent answers a request whose caller had no time left.
var errBudgetSpent = fmt.Errorf("gateway: request budget spent: %w", context.DeadlineExceeded)

// tryDeadline is when a try starting at now with its own timeout d must end:
// never after the request's budget.
func (st *reqState) tryDeadline(now time.Time, d time.Duration) time.Time {
	if t := now.Add(d); t.Before(st.deadline) {
		return t
	}
	return st.deadline
}

// attemptState is the storage of one attempt: the outgoing request, its URL,
// the budget header value and the body wrapper. The local attempt's lives in
// the reqState.
type attemptState struct {
	req    http.Request
	url    url.URL
	budget [1]string
	body   releaseBody
}

// attempt sends req to one instance of pool by deadline and tells the
// instance the time it has left. The deadline covers the body too, so the
// context is cancelled when the body is closed.
func (r *route) attempt(req *http.Request, pool *upstream.Pool, now, end time.Time, a *attemptState) (*http.Response, error) {
	in, err := pool.Pick()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithDeadline(req.Context(), end)
	out := withContext(&a.req, req, ctx)
	a.url = *req.URL
	a.url.Scheme, a.url.Host = in.URL.Scheme, in.URL.Host
	out.URL, out.Host = &a.url, ""
	a.budget[0] = deadline.Format(end.Sub(now))
	out.Header[deadline.Header] = a.budget[:1:1] // a header map of this try's own (see RoundTrip)
	resp, err := r.g.transport.RoundTrip(out)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded && !errors.Is(err, context.DeadlineExceeded) {
			err = errors.Join(err, context.DeadlineExceeded)
		}
		cancel()
		in.Done()
		return nil, err
	}
	a.body = releaseBody{ReadCloser: resp.Body, cancel: cancel, in: in}
	resp.Body = &a.body
	return resp, nil
}

// releaseBody frees the attempt's timeout and instance slot on Close.
type releaseBody struct {
	io.ReadCloser
	cancel context.CancelFunc
	in     *upstream.Instance
	closed bool
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.closed {
		b.closed = true
		b.cancel()
		b.in.Done()
	}
	return err
}
