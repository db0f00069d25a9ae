// Package degrade holds per-route degradation switches. A switch is flipped
// by hand (operator, admin API, a named plan) or automatically when the
// route's error or timeout rate stays over a threshold for N seconds; while
// it is on, requests get the fallback instead of reaching the upstream.
package degrade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
	"github.com/mercury-apm/mercury/internal/window"
)

// ErrDegraded is returned by Allow while the switch is on.
var ErrDegraded = errors.New("degrade: route degraded")

// Kind of fallback response.
type Kind string

// Fallback kinds.
const (
	Static Kind = "static" // a configured body
	Cache  Kind = "cache"  // the kept response for this request, else an error
	Error  Kind = "error"  // an error status
)

// Fallback says what a degraded route answers.
type Fallback struct {
	Kind        Kind   `json:"kind" yaml:"kind"`
	Status      int    `json:"status,omitempty" yaml:"status"`
	Body        string `json:"body,omitempty" yaml:"body"`
	ContentType string `json:"content_type,omitempty" yaml:"content_type"`
}

// Validate checks the fallback and fills defaults.
func (f *Fallback) Validate() error {
	switch f.Kind {
	case "":
		f.Kind = Error
	case Static, Cache, Error:
	default:
		return fmt.Errorf("degrade: unknown fallback kind %q (want static, cache or error)", f.Kind)
	}
	if f.Status == 0 {
		f.Status = http.StatusOK
		if f.Kind == Error {
			f.Status = http.StatusServiceUnavailable
		}
	}
	if f.Status < 200 || f.Status > 599 {
		return fmt.Errorf("degrade: fallback status %d out of range", f.Status)
	}
	if f.Kind == Static && f.ContentType == "" {
		f.ContentType = "text/plain; charset=utf-8"
	}
	return nil
}

// AutoConfig turns a switch on when, for For consecutive whole seconds with
// at least MinRequests requests each, the error rate or the timeout rate is
// at or above its threshold (a zero threshold is off). After RecoverAfter the
// switch turns itself off again and traffic decides anew.
type AutoConfig struct {
	ErrorRate    float64       `yaml:"error_rate"`
	TimeoutRate  float64       `yaml:"timeout_rate"`
	For          time.Duration `yaml:"for"`           // default 5s
	MinRequests  int64         `yaml:"min_requests"`  // per second, default 10
	RecoverAfter time.Duration `yaml:"recover_after"` // default 30s
}

// Setting is the operator-controlled part of a switch, what plans set.
type Setting struct {
	On       bool      `json:"on" yaml:"on"`
	Fallback *Fallback `json:"fallback,omitempty" yaml:"fallback"` // nil keeps the current one
}

// Config of a switch.
type Config struct {
	Fallback Fallback
	Auto     *AutoConfig
	Clock    clock.Clock
	// OnChange is called on every change of the effective state, with the
	// reason: "manual", "auto", "recovered" or "manual-off".
	OnChange func(on bool, reason string)
	// CacheBytes bounds the bodies the cache fallback keeps (default 8 MiB).
	CacheBytes int64
	// RetryAfter, when set, is sent as Retry-After (whole seconds, at
	// least 1) with a 429 or 503 fallback.
	RetryAfter time.Duration
}

type bucket struct{ requests, errors, timeouts int64 }

// Switch is safe for concurrent use. Allow is a single atomic load while the
// switch is off and no automatic rule is configured.
type Switch struct {
	clock      clock.Clock
	auto       *AutoConfig
	onChange   func(bool, string)
	done       func(error)
	on         atomic.Bool // effective state, read on the hot path
	cache      *ResponseCache
	retryAfter string // header value, "" for none

	mu         sync.Mutex
	manual     bool
	fallback   Fallback
	autoOn     bool
	autoSince  int64
	win        *window.Window[bucket]
	checkedSec int64
}

// New validates c and returns a switch, off.
func New(c Config) (*Switch, error) {
	if err := c.Fallback.Validate(); err != nil {
		return nil, err
	}
	if c.CacheBytes < 0 {
		return nil, errors.New("degrade: cache bytes must be ≥ 0")
	}
	s := &Switch{clock: clock.Or(c.Clock), onChange: c.OnChange, fallback: c.Fallback, checkedSec: -1,
		cache: NewResponseCache(c.CacheBytes), retryAfter: RetryAfter(c.RetryAfter)}
	if a := c.Auto; a != nil {
		ac := *a
		if ac.For == 0 {
			ac.For = 5 * time.Second
		}
		if ac.MinRequests == 0 {
			ac.MinRequests = 10
		}
		if ac.RecoverAfter == 0 {
			ac.RecoverAfter = 30 * time.Second
		}
		switch {
		case ac.ErrorRate < 0 || ac.ErrorRate > 1 || ac.TimeoutRate < 0 || ac.TimeoutRate > 1:
			return nil, errors.New("degrade: auto rates must be in [0,1]")
		case ac.ErrorRate == 0 && ac.TimeoutRate == 0:
			return nil, errors.New("degrade: auto needs error_rate or timeout_rate")
		case ac.For < time.Second || ac.RecoverAfter < 0 || ac.MinRequests < 1:
			return nil, errors.New("degrade: auto for must be ≥ 1s, recover_after ≥ 0, min_requests ≥ 1")
		}
		s.auto = &ac
		s.win = window.New[bucket](int(ac.For/time.Second)+1, int64(time.Second))
	}
	s.done = s.finish
	return s, nil
}

// Allow returns ErrDegraded while the switch is on. done feeds the automatic
// rule and must be called exactly once with breaker.Failure-style errors.
func (s *Switch) Allow() (func(error), error) {
	if s.on.Load() {
		if s.auto == nil || !s.maybeRecover() {
			return nil, ErrDegraded
		}
	}
	return s.done, nil
}

// maybeRecover ends an automatic degradation whose time is up and reports
// whether the switch is now off.
func (s *Switch) maybeRecover() bool {
	now := s.clock.Now()
	s.mu.Lock()
	if !s.autoOn || s.manual || now-s.autoSince < int64(s.auto.RecoverAfter) {
		s.mu.Unlock()
		return false
	}
	s.autoOn = false
	s.win = window.New[bucket](s.win.Len(), s.win.Width())
	s.on.Store(false)
	s.mu.Unlock()
	s.notify(false, "recovered")
	return true
}

func (s *Switch) notify(on bool, reason string) {
	if s.onChange != nil {
		s.onChange(on, reason)
	}
}

func isTimeout(err error) bool {
	var nerr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout())
}

func (s *Switch) finish(err error) {
	if s.auto == nil {
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	cur := s.win.Advance(now)
	cur.requests++
	if err != nil {
		if isTimeout(err) {
			cur.timeouts++
		} else {
			cur.errors++
		}
	}
	trip := false
	if sec := s.win.Epoch(now); sec != s.checkedSec {
		s.checkedSec = sec // judge the completed seconds once per second
		trip = !s.autoOn && !s.manual && s.badLongEnough()
	}
	if trip {
		s.autoOn, s.autoSince = true, now
		s.on.Store(true)
	}
	s.mu.Unlock()
	if trip {
		s.notify(true, "auto")
	}
}

// badLongEnough reports whether every completed second in the window broke
// a threshold; caller holds mu.
func (s *Switch) badLongEnough() bool {
	a := s.auto
	for i, b := range s.win.Buckets() {
		if s.win.Current(i) {
			continue
		}
		if b.requests < a.MinRequests {
			return false
		}
		n := float64(b.requests)
		badErr := a.ErrorRate > 0 && float64(b.errors) >= a.ErrorRate*n
		badTimeout := a.TimeoutRate > 0 && float64(b.timeouts) >= a.TimeoutRate*n
		if !badErr && !badTimeout {
			return false
		}
	}
	return true
}

// Apply sets the manual state (and the fallback, if given) and returns the
// previous setting, so a plan can revert it.
func (s *Switch) Apply(set Setting) (Setting, error) {
	if set.Fallback != nil {
		if err := set.Fallback.Validate(); err != nil {
			return Setting{}, err
		}
	}
	s.mu.Lock()
	prevFallback := s.fallback
	prev := Setting{On: s.manual, Fallback: &prevFallback}
	s.manual = set.On
	if set.Fallback != nil {
		s.fallback = *set.Fallback
	}
	was := s.on.Load()
	now := s.manual || s.autoOn
	s.on.Store(now)
	s.mu.Unlock()
	if was != now {
		reason := "manual"
		if !now {
			reason = "manual-off"
		}
		s.notify(now, reason)
	}
	return prev, nil
}

// Status is a snapshot for the admin API.
type Status struct {
	On       bool     `json:"on"`
	Manual   bool     `json:"manual"`
	Auto     bool     `json:"auto"`
	Fallback Fallback `json:"fallback"`
	Cached   int      `json:"cached_responses"` // kept for the cache fallback
}

// Status returns the current state.
func (s *Switch) Status() Status {
	cached := s.cache.Len()
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{On: s.on.Load(), Manual: s.manual, Auto: s.autoOn, Fallback: s.fallback, Cached: cached}
}

// FallbackKind is the current fallback's kind; the proxy only keeps
// responses for the cache fallback when it is in use.
func (s *Switch) FallbackKind() Kind {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fallback.Kind
}

// Cache is the switch's response cache for the cache fallback.
func (s *Switch) Cache() *ResponseCache { return s.cache }

// WriteFallback answers req with the fallback. The cache fallback answers
// only from a response kept for the same method, URL and Vary headers, and
// only GET and HEAD; anything else gets 503.
func (s *Switch) WriteFallback(w http.ResponseWriter, req *http.Request) {
	s.mu.Lock()
	fb := s.fallback
	s.mu.Unlock()
	h := w.Header()
	h.Set("X-Mercury-Degraded", "1")
	switch fb.Kind {
	case Static:
		h.Set("Content-Type", fb.ContentType)
		h.Set("Content-Length", strconv.Itoa(len(fb.Body)))
		w.WriteHeader(fb.Status)
		_, _ = w.Write([]byte(fb.Body))
		return
	case Cache:
		if r := s.cache.Get(req); r != nil {
			for k, v := range r.Header {
				h[k] = v
			}
			h.Set("X-Mercury-Degraded", "cache")
			w.WriteHeader(r.Status)
			if req.Method != http.MethodHead {
				_, _ = w.Write(r.Body)
			}
			return
		}
		fb.Status = http.StatusServiceUnavailable
	}
	if s.retryAfter != "" && (fb.Status == http.StatusServiceUnavailable || fb.Status == http.StatusTooManyRequests) {
		h.Set("Retry-After", s.retryAfter)
	}
	http.Error(w, "degraded", fb.Status)
}

// RetryAfter renders d as a Retry-After value: whole seconds rounded up, at
// least 1; "" for d ≤ 0.
func RetryAfter(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
