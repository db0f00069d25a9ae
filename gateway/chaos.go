package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/gateway/retry"
	"github.com/mercury-apm/mercury/gateway/upstream"
)

// ChaosExperiment injects faults into the local tries of a route's requests
// (TMEChaos in the QQ Music seed): a delay, an abort with a status, or both,
// for a share of the requests, optionally dyed (load-test) ones only. The
// gateway's own defences — local retry, failover, breaker, degradation —
// react as to a real fault. The steady-state guard ends the experiment by
// itself when tier-1 success falls below its bound.
type ChaosExperiment struct {
	Route       string      `json:"route"`        // a route name; "" for every route
	DelayMillis int64       `json:"delay_ms"`     // added before the try is sent
	AbortStatus int         `json:"abort_status"` // answered instead of the upstream (400–599); 0: none
	Percent     float64     `json:"percent"`      // share of matching requests, (0, 100]
	DyedOnly    bool        `json:"dyed_only"`    // only X-Mercury-Dye traffic
	Seconds     int64       `json:"seconds"`      // ends by itself after this long; default 300, at most 3600
	Guard       SteadyState `json:"guard"`
}

// SteadyState is the guard: while an experiment runs, real (not dyed)
// tier-1 requests are counted over a rolling window, and once there are
// MinRequests of them a success ratio below MinTier1Success aborts it.
type SteadyState struct {
	MinTier1Success float64 `json:"min_tier1_success"` // default 0.95
	MinRequests     int64   `json:"min_requests"`      // default 20
	WindowSeconds   int64   `json:"window_s"`          // default 10
}

var errChaosRunning = errors.New("an experiment is running: stop it first")

const (
	maxChaosDelay   = 60 * time.Second
	maxChaosSeconds = 3600
)

func (e *ChaosExperiment) validate(routes map[string]*route) error {
	if e.Route != "" && routes[e.Route] == nil {
		return fmt.Errorf("unknown route %q", e.Route)
	}
	if e.Seconds == 0 {
		e.Seconds = 300
	}
	g := &e.Guard
	if g.MinTier1Success == 0 {
		g.MinTier1Success = 0.95
	}
	if g.MinRequests == 0 {
		g.MinRequests = 20
	}
	if g.WindowSeconds == 0 {
		g.WindowSeconds = 10
	}
	switch {
	case e.DelayMillis < 0 || time.Duration(e.DelayMillis)*time.Millisecond > maxChaosDelay:
		return fmt.Errorf("delay_ms must be in [0, %d]", maxChaosDelay.Milliseconds())
	case e.AbortStatus != 0 && (e.AbortStatus < 400 || e.AbortStatus > 599):
		return errors.New("abort_status must be 400–599 (or 0 for none)")
	case e.DelayMillis == 0 && e.AbortStatus == 0:
		return errors.New("an experiment needs delay_ms or abort_status")
	case !(e.Percent > 0 && e.Percent <= 100):
		return errors.New("percent must be in (0, 100]")
	case e.Seconds < 1 || e.Seconds > maxChaosSeconds:
		return fmt.Errorf("seconds must be in [1, %d]", maxChaosSeconds)
	case !(g.MinTier1Success > 0 && g.MinTier1Success <= 1) || g.MinRequests < 1 || g.WindowSeconds < 1:
		return errors.New("guard: min_tier1_success in (0, 1], min_requests and window_s ≥ 1")
	}
	return nil
}

// chaos is a running experiment.
type chaos struct {
	g       *Gateway
	exp     ChaosExperiment
	started time.Time
	until   int64 // g.clock time it expires
	delay   time.Duration
	share   float64
	tier1   *retry.Rate // failures among real tier-1 requests
	delayed atomic.Int64
	aborted atomic.Int64
}

// ChaosStatus is what GET /admin/chaos reports.
type ChaosStatus struct {
	Running    bool            `json:"running"`
	Experiment ChaosExperiment `json:"experiment"`
	Started    time.Time       `json:"started"`
	Ended      *time.Time      `json:"ended,omitempty"`
	EndReason  string          `json:"end_reason,omitempty"` // stopped, expired, or the steady-state breach
	Delayed    int64           `json:"delayed"`
	Aborted    int64           `json:"aborted"`
	Tier1      struct {
		Requests int64   `json:"requests"`
		Success  float64 `json:"success"`
	} `json:"tier1"`
}

func (c *chaos) status() ChaosStatus {
	s := ChaosStatus{Experiment: c.exp, Started: c.started}
	s.Delayed, s.Aborted = c.delayed.Load(), c.aborted.Load()
	n, failed := c.tier1.Counts()
	s.Tier1.Requests = n
	if n > 0 {
		s.Tier1.Success = 1 - float64(failed)/float64(n)
	}
	return s
}

// startChaos runs exp unless one is running already.
func (g *Gateway) startChaos(exp ChaosExperiment) (ChaosStatus, error) {
	if err := exp.validate(g.table.Load().byName); err != nil {
		return ChaosStatus{}, err
	}
	c := &chaos{g: g, exp: exp, started: time.Now(), until: g.clock.Now() + exp.Seconds*int64(time.Second),
		delay: time.Duration(exp.DelayMillis) * time.Millisecond, share: exp.Percent / 100,
		tier1: retry.NewRate(time.Duration(exp.Guard.WindowSeconds)*time.Second, g.clock)}
	if !g.chaos.CompareAndSwap(nil, c) {
		return ChaosStatus{}, errChaosRunning
	}
	g.chaosEvent("started", exp)
	st := c.status()
	st.Running = true
	return st, nil
}

// endChaos ends c if it is still the running experiment.
func (g *Gateway) endChaos(c *chaos, reason string) bool {
	if !g.chaos.CompareAndSwap(c, nil) {
		return false // already ended by someone else
	}
	st := c.status()
	now := time.Now()
	st.Ended, st.EndReason = &now, reason
	g.chaosLast.Store(&st)
	g.chaosEvent("ended", c.exp, slog.String("reason", reason))
	return true
}

func (g *Gateway) chaosEvent(state string, exp ChaosExperiment, attrs ...slog.Attr) {
	info := RouteInfo{Name: exp.Route, Region: g.cfg.Region}
	if r := g.route(exp.Route); r != nil {
		info = r.info
	}
	g.obs.Event(EventChaos, info, append([]slog.Attr{slog.String("state", state),
		slog.Int64("delay_ms", exp.DelayMillis), slog.Int("abort_status", exp.AbortStatus),
		slog.Float64("percent", exp.Percent), slog.Bool("dyed_only", exp.DyedOnly)}, attrs...)...)
}

// chaosStatus is the running experiment, else the last one.
func (g *Gateway) chaosStatus() (ChaosStatus, bool) {
	if c := g.chaos.Load(); c != nil {
		st := c.status()
		st.Running = true
		return st, true
	}
	if last := g.chaosLast.Load(); last != nil {
		return *last, true
	}
	return ChaosStatus{}, false
}

// fault returns the experiment to apply to this request's local try, if
// any; an expired experiment ends here.
func (r *route) fault(st *reqState) *chaos {
	c := r.g.chaos.Load()
	if c == nil || (c.exp.Route != "" && c.exp.Route != r.cfg.Name) || (c.exp.DyedOnly && !st.dyed) {
		return nil
	}
	if r.g.clock.Now() >= c.until {
		r.g.endChaos(c, "expired")
		return nil
	}
	if c.share < 1 && rand.Float64() >= c.share {
		return nil
	}
	return c
}

// inject applies c to a try that would go to instance in by end: it waits
// the delay (a try whose time runs out meanwhile times out without being
// sent) and, with an abort, answers instead of the upstream. sent is false
// when it answered.
func (c *chaos) inject(req *http.Request, in *upstream.Instance, end time.Time) (resp *http.Response, sent bool, err error) {
	if c.delay > 0 {
		c.delayed.Add(1)
		wait := min(c.delay, time.Until(end))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			in.Done()
			return nil, false, req.Context().Err()
		}
		if wait < c.delay {
			in.Done()
			return nil, false, fmt.Errorf("gateway: chaos delay outlasted the try: %w", context.DeadlineExceeded)
		}
	}
	if c.exp.AbortStatus == 0 {
		return nil, true, nil
	}
	c.aborted.Add(1)
	in.Done()
	body := "chaos: injected fault\n"
	return &http.Response{StatusCode: c.exp.AbortStatus, Status: fmt.Sprintf("%d %s", c.exp.AbortStatus, http.StatusText(c.exp.AbortStatus)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: req, ContentLength: int64(len(body)),
		Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "X-Mercury-Chaos": {"abort"}},
		Body:   io.NopCloser(strings.NewReader(body))}, false, nil
}

// guard counts one finished real tier-1 request and aborts the experiment
// when the steady state is broken.
func (c *chaos) guard(status int) {
	c.tier1.Observe(status >= 500)
	n, failed := c.tier1.Counts()
	if n < c.exp.Guard.MinRequests {
		return
	}
	if success := 1 - float64(failed)/float64(n); success < c.exp.Guard.MinTier1Success {
		c.g.endChaos(c, fmt.Sprintf("steady state broken: tier-1 success %.3f < %.3f over %d requests",
			success, c.exp.Guard.MinTier1Success, n))
	}
}
