// Package retry holds the adaptive cross-region retry window: failover to the
// remote region is capped per probe round so retries cannot flatten a remote
// region that is itself struggling.
//
// The window f starts at 1. At the end of each round, with g probes used, s
// their success ratio and t the local requests of the round:
//
//	s ≥ 98 %, g ≥ f : f ← f + max(min(⌊1 % · t⌋, f), 1)   (probe further)
//	s ≥ 98 %, g < f : f unchanged                         (window under-used)
//	s < 98 %        : f ← max(1, ⌊f/2⌋)                    (back off)
//
// A probe is attributed to the round in which it reports; a round whose
// probes are all still in flight holds the window.
package retry

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

// ErrExhausted is returned by Acquire when this round's window is used up.
var ErrExhausted = errors.New("retry: window exhausted")

// Config of a retry window.
type Config struct {
	Round            time.Duration // probe round length, default 1s
	SuccessThreshold float64       // default 0.98
	Clock            clock.Clock
	// OnChange is called (outside the lock) whenever a round changes the
	// window size.
	OnChange func(from, to int64)
}

// Window is safe for concurrent use.
type Window struct {
	cfg   Config
	clock clock.Clock
	done  func(error)

	// round and local are atomics so Local, called for every request,
	// takes the lock only when a round ends.
	round atomic.Int64 // index of the current round
	local atomic.Int64

	mu                 sync.Mutex
	size               int64
	used, ok, finished int64
}

// New validates c and returns a window of size 1.
func New(c Config) (*Window, error) {
	if c.Round == 0 {
		c.Round = time.Second
	}
	if c.SuccessThreshold == 0 {
		c.SuccessThreshold = 0.98
	}
	if c.Round < 0 || c.SuccessThreshold < 0 || c.SuccessThreshold > 1 {
		return nil, errors.New("retry: round must be positive and success threshold in [0,1]")
	}
	w := &Window{cfg: c, clock: clock.Or(c.Clock), size: 1}
	w.round.Store(w.clock.Now() / int64(c.Round))
	w.done = w.finish
	return w, nil
}

// roll closes the round if now is past it; caller holds mu. It returns the
// old and new size.
func (w *Window) roll(now int64) (from, to int64) {
	from = w.size
	r := now / int64(w.cfg.Round)
	if r <= w.round.Load() {
		return from, from
	}
	local := w.local.Swap(0)
	switch {
	case w.finished == 0: // nothing reported: no evidence either way
	case float64(w.ok) < w.cfg.SuccessThreshold*float64(w.finished):
		w.size = max(1, w.size/2)
	case w.used >= w.size:
		w.size += max(min(local/100, w.size), 1)
	}
	w.round.Store(r)
	w.used, w.ok, w.finished = 0, 0, 0
	return from, w.size
}

func (w *Window) notify(from, to int64) {
	if from != to && w.cfg.OnChange != nil {
		w.cfg.OnChange(from, to)
	}
}

// Local counts one request served (or attempted) locally in this round.
func (w *Window) Local() {
	now := w.clock.Now()
	if now/int64(w.cfg.Round) > w.round.Load() {
		w.mu.Lock()
		from, to := w.roll(now)
		w.mu.Unlock()
		w.notify(from, to)
	}
	w.local.Add(1)
}

// Acquire takes one retry slot of this round; done(err) reports the probe's
// outcome (nil = success) and must be called exactly once.
func (w *Window) Acquire() (func(error), error) {
	now := w.clock.Now()
	w.mu.Lock()
	from, to := w.roll(now)
	if w.used >= w.size {
		w.mu.Unlock()
		w.notify(from, to)
		return nil, ErrExhausted
	}
	w.used++
	w.mu.Unlock()
	w.notify(from, to)
	return w.done, nil
}

func (w *Window) finish(err error) {
	now := w.clock.Now()
	w.mu.Lock()
	from, to := w.roll(now)
	w.finished++
	if err == nil {
		w.ok++
	}
	w.mu.Unlock()
	w.notify(from, to)
}

// Stats is a snapshot for the admin API.
type Stats struct {
	Size      int64 `json:"size"`
	Used      int64 `json:"used"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	Local     int64 `json:"local"`
}

// Stats returns the figures of the current round.
func (w *Window) Stats() Stats {
	now := w.clock.Now()
	w.mu.Lock()
	from, to := w.roll(now)
	s := Stats{Size: w.size, Used: w.used, Succeeded: w.ok, Failed: w.finished - w.ok, Local: w.local.Load()}
	w.mu.Unlock()
	w.notify(from, to)
	return s
}

// Switches are the operator's retry switches: one global, one per service.
// Both must be on for a service to fail over. The zero value is all on.
type Switches struct {
	globalOff atomic.Bool
	off       sync.Map // service → struct{}
}

// SetGlobal turns cross-region retry on or off everywhere.
func (s *Switches) SetGlobal(on bool) { s.globalOff.Store(!on) }

// SetService turns retry on or off for one service.
func (s *Switches) SetService(service string, on bool) {
	if on {
		s.off.Delete(service)
	} else {
		s.off.Store(service, struct{}{})
	}
}

// Global reports the global switch.
func (s *Switches) Global() bool { return !s.globalOff.Load() }

// Service reports the service's own switch, whatever the global one says.
func (s *Switches) Service(service string) bool {
	_, off := s.off.Load(service)
	return !off
}

// Off lists the services switched off, sorted.
func (s *Switches) Off() []string {
	var out []string
	s.off.Range(func(k, _ any) bool {
		out = append(out, k.(string))
		return true
	})
	slices.Sort(out)
	return out
}

// Enabled reports whether service may fail over.
func (s *Switches) Enabled(service string) bool {
	if s.globalOff.Load() {
		return false
	}
	_, off := s.off.Load(service)
	return !off
}

// Idempotent reports whether a method may be replayed safely (RFC 9110 §9.2.2).
func Idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}
