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

// routeTransport is the route's RoundTripper: the local try behind rate
// limit, breaker and dynamic timeout, at most one retry on another local
// instance, then at most one failover to the remote region under the retry
// window. Doing this below httputil.ReverseProxy means nothing reached the
// client before a retry decision.
type routeTransport route

// errRefused wraps a local limiter or breaker refusal so failover can tell it
// from an upstream failure.
type errRefused struct{ err error }

func (e errRefused) Error() string { return e.err.Error() }
func (e errRefused) Unwrap() error { return e.err }

func (t *routeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := (*route)(t)
	st := stateOf(req.Context())
	resp, c, err := r.tryLocal(req, st)
	if c == classDone || r.window == nil {
		return resp, err
	}
	if why := r.mayRetry(req, st, time.Now()); why != "" {
		r.m.failover(why)
		return resp, err
	}
	release, werr := r.window.Acquire()
	if werr != nil {
		r.unretry(st)
		r.m.failover("window_exhausted")
		return resp, err
	}
	in, perr := r.remote.Pick()
	if perr != nil {
		release(perr) // the probe found the remote region down
		r.unretry(st)
		r.m.failover("no_healthy_remote")
		return resp, err
	}
	retry, rerr := r.replay(req, resp)
	if rerr != nil {
		in.Done()
		release(rerr)
		r.unretry(st)
		return resp, err
	}
	st.retried = c != classRefused
	st.failedOver = true
	st.upstream = UpstreamRemote
	now := time.Now()
	resp, err = r.attempt(retry, in, now, st.tryDeadline(now, r.remoteTimeout), new(attemptState))
	in.Report(instanceFailed(resp, err))
	fail := breaker.Failure(status(resp), err)
	release(fail)
	if fail != nil {
		r.m.failover("failed")
	} else {
		r.m.failover("ok")
	}
	return resp, err
}

// mayRetry returns "" when another try may go out now, else why not. A yes
// takes a slot of the retry budget, which the request holds until it ends.
func (r *route) mayRetry(req *http.Request, st *reqState, now time.Time) string {
	switch {
	case !r.g.retries.Enabled(r.cfg.Service):
		return "switched_off"
	case !r.replayable(req):
		return "not_idempotent"
	case req.Body != nil && req.Body != http.NoBody && req.GetBody == nil:
		return "body_too_large"
	case st.deadline.Sub(now) < minTry:
		return "no_budget"
	case st.retrying: // the slot this request already holds covers this try
	case r.retry.budget.Acquire(r.active.Load()) != nil:
		return "retry_budget"
	default:
		st.retrying = true
	}
	return ""
}

// unretry gives back the retry-budget slot mayRetry took when no retry went
// out after all.
func (r *route) unretry(st *reqState) {
	if st.retrying && !st.retriedLocally && !st.failedOver {
		st.retrying = false
		r.retry.budget.Release()
	}
}

// replay prepares req for another try and drains the failed response. The
// replay gets its own header map: the previous try's transport may still
// hold the old one, and attempt writes the budget header.
func (r *route) replay(req *http.Request, failed *http.Response) (*http.Request, error) {
	body := req.Body
	if req.GetBody != nil {
		var err error
		if body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	if failed != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(failed.Body, 64<<10)) // reuse the connection
		failed.Body.Close()
	}
	out := req.Clone(req.Context())
	out.Body = body
	return out, nil
}

func status(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// tryLocal runs the local-side admission (rate limit, breaker) and the
// local try, and a retry on another local instance when the policy says so.
// The breaker judges the local side by its last try.
func (r *route) tryLocal(req *http.Request, st *reqState) (*http.Response, class, error) {
	if r.window != nil {
		r.window.Local()
	}
	limiter, brk, edge, name := r.limiter, r.breaker, &r.limitEdge, shedRateLimit
	if st.dyed { // load tests have their own, so they cannot eat real users' limit or trip their breaker
		limiter, brk, edge, name = r.dyeLimiter, r.dyeBreaker, &r.dyeLimitEdge, "ratelimit_dyed"
	}
	if limiter != nil {
		_, err := limiter.Allow()
		r.limiterEdge(edge, name, err != nil)
		if err != nil {
			st.shedBy = shedRateLimit
			r.m.shedBy(shedRateLimit)
			err = errRefused{err}
			return nil, r.retry.classify(nil, err), err
		}
	}
	var done func(error)
	if brk != nil {
		var err error
		if done, err = brk.Allow(); err != nil {
			st.shedBy = shedBreaker
			r.m.shedBy(shedBreaker)
			err = errRefused{err}
			return nil, r.retry.classify(nil, err), err
		}
	}
	in, err := r.local.Pick()
	if err != nil {
		if done != nil {
			done(err)
		}
		return nil, r.retry.classify(nil, err), err
	}
	st.upstream = UpstreamLocal
	resp, c, err := r.localTry(req, st, in, &st.local)
	if r.retry.localRetry(c) {
		resp, c, err = r.retryLocally(req, st, in, resp, c, err)
	}
	if done != nil {
		done(breaker.Failure(status(resp), err))
	}
	return resp, c, err
}

// retryLocally tries another local instance than the one that failed, when
// there is one and the retry switches, the body, the budget and the retry
// budget allow; otherwise the failed try's outcome stands.
func (r *route) retryLocally(req *http.Request, st *reqState, failed *upstream.Instance,
	resp *http.Response, c class, err error) (*http.Response, class, error) {
	if why := r.mayRetry(req, st, time.Now()); why != "" {
		r.m.localRetry(why)
		return resp, c, err
	}
	in, perr := r.local.PickOther(failed)
	if perr != nil {
		r.unretry(st)
		r.m.localRetry("no_other_instance")
		return resp, c, err
	}
	retry, rerr := r.replay(req, resp)
	if rerr != nil {
		in.Done()
		r.unretry(st)
		return resp, c, err
	}
	st.retriedLocally = true
	resp, c, err = r.localTry(retry, st, in, new(attemptState))
	if c == classDone {
		r.m.localRetry("ok")
	} else {
		r.m.localRetry("failed")
	}
	return resp, c, err
}

// localTry is one local try on instance in under the dynamic (or fixed)
// timeout, capped by the request's budget; it feeds the EMA, the timeout
// rate and outlier detection.
func (r *route) localTry(req *http.Request, st *reqState, in *upstream.Instance, a *attemptState) (*http.Response, class, error) {
	d := r.localTimeout
	if r.dyn != nil {
		d = r.dyn.Timeout()
	}
	start := time.Now() // one reading for the deadline and the EMA's latency
	end := st.tryDeadline(start, d)
	var resp *http.Response
	var err error
	sent, now := true, start
	if c := r.fault(st); c != nil { // a chaos experiment
		resp, sent, err = c.inject(req, in, end)
		now = time.Now()
	}
	if sent {
		resp, err = r.attempt(req, in, now, end, a)
	}
	if r.dyn != nil {
		r.dyn.Observe(time.Since(start)) // headers in, or the try failed
	}
	in.Report(instanceFailed(resp, err))
	c := r.retry.classify(resp, err)
	if r.retry.timeouts != nil {
		r.retry.timeouts.Observe(c == classTimeout)
	}
	return resp, c, err
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

// attemptState is the storage of one try: the outgoing request, its URL,
// the budget header value and the body wrapper. The first local try's lives
// in the reqState.
type attemptState struct {
	req    http.Request
	url    url.URL
	budget [1]string
	body   releaseBody
}

// attempt sends req to instance in (picked by the caller, released here) by
// end, and tells the instance the time it has left. The deadline covers the
// body too, so the context is cancelled when the body is closed.
func (r *route) attempt(req *http.Request, in *upstream.Instance, now, end time.Time, a *attemptState) (*http.Response, error) {
	ctx, cancel := context.WithDeadline(req.Context(), end)
	out := withContext(&a.req, req, ctx)
	a.url = *req.URL
	a.url.Scheme, a.url.Host = in.URL.Scheme, in.URL.Host
	out.URL, out.Host = &a.url, ""
	a.budget[0] = deadline.Format(end.Sub(now))
	out.Header[deadline.Header] = a.budget[:1:1] // a header map of this try's own (see replay)
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

// releaseBody frees the try's timeout and instance slot on Close.
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
