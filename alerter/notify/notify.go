// Package notify delivers alert notifications: receivers (generic JSON webhook,
// Alertmanager API v2, SMTP email, log) and the dispatcher that drains the alert store's
// outbox with retries and backoff. A notice leaves the outbox only once delivered (or
// refused for good), so a crash between deciding and delivering loses nothing: the next
// dispatcher (this process after a restart, or another instance once the claim's lease
// runs out) delivers it.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// Notice events.
const (
	Fired     = "fired"
	Escalated = "escalated" // warning → alarm
	Resolved  = "resolved"
	Refreshed = "refreshed" // still firing (to Alertmanagers, which forget alerts not re-sent)
)

// Notification is one alert transition for one receiver.
type Notification struct {
	NoticeID string // stable across redeliveries of the same notice
	Event    string
	Alert    alertstore.Alert
	// Links lead from the alert to the events and traces behind it (absolute when the
	// dispatcher knows the query API's address).
	Links Links
}

// Links point at the alert, its events and sample traces on the query API.
type Links struct {
	Alert  string   `json:"alert,omitempty"`
	Events string   `json:"events,omitempty"`
	Traces []string `json:"traces,omitempty"`
}

// Receiver delivers notifications somewhere. An error marked retry.Permanent (a receiver
// refusing the request) is not retried; any other is, with backoff.
type Receiver interface {
	Notify(ctx context.Context, n Notification) error
}

// Log writes notifications to a logger.
type Log struct{ Logger *slog.Logger }

// Notify logs n.
func (l Log) Notify(_ context.Context, n Notification) error {
	a := &n.Alert
	l.Logger.Warn("alert "+n.Event, "id", a.ID, "level", a.Level, "service", a.Service, "summary", a.Summary,
		"count", a.Count, "suppressed", a.Suppressed, "prev_suppressed", a.PrevSuppressed, "link", n.Links.Alert)
	return nil
}

// DispatcherConfig configures a Dispatcher.
type DispatcherConfig struct {
	Store     alertstore.Store
	Receivers map[string]Receiver
	// LinkBase is the query API's base URL, e.g. http://127.0.0.1:8080 ("": relative links).
	LinkBase string
	Logger   *slog.Logger
	Now      func() time.Time // default time.Now
	// Backoff after a failed attempt: Min·2^(attempts-1) capped at Max; give up after
	// MaxAttempts (the notice is dropped and the alert's history says so).
	BackoffMin, BackoffMax time.Duration // default 1 s, 5 min
	MaxAttempts            int           // default 12 (about half an hour of trying)
	// Lease is how long a claimed notice is hidden from other dispatchers; default 1 min.
	Lease time.Duration
	// Timeout bounds one delivery; default 10 s.
	Timeout time.Duration
	// Poll is how often the outbox is checked when nothing wakes the dispatcher; default 1 s.
	Poll        time.Duration
	Parallelism int // deliveries at once; default 8
}

// Dispatcher drains the store's outbox.
type Dispatcher struct {
	cfg     DispatcherConfig
	wake    chan struct{}
	sent    *prometheus.CounterVec
	failed  *prometheus.CounterVec
	latency prometheus.Histogram
}

// NewDispatcher checks cfg and fills its defaults.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Store == nil {
		return nil, errors.New("notify: dispatcher needs a store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.BackoffMin, time.Second)
	def(&cfg.BackoffMax, 5*time.Minute)
	def(&cfg.Lease, time.Minute)
	def(&cfg.Timeout, 10*time.Second)
	def(&cfg.Poll, time.Second)
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 12
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = 8
	}
	return &Dispatcher{cfg: cfg, wake: make(chan struct{}, 1),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mercury_alerter_notifications_total",
			Help: "Notifications delivered, by receiver."}, []string{"receiver"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mercury_alerter_notification_failures_total",
			Help: "Failed delivery attempts, by receiver."}, []string{"receiver"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mercury_alerter_notification_delay_seconds",
			Help:    "From an alert's start to the delivery of its fired notice.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60}}),
	}, nil
}

// Collectors are the dispatcher's metrics, for the daemon's registry.
func (d *Dispatcher) Collectors() []prometheus.Collector {
	return []prometheus.Collector{d.sent, d.failed, d.latency}
}

// Wake makes Run look at the outbox now (a new alert was stored).
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers due notices until ctx ends, and refreshes firing alerts at Alertmanagers
// every RefreshEvery.
func (d *Dispatcher) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Poll)
	defer t.Stop()
	refreshed := d.cfg.Now()
	for {
		if _, err := d.DeliverDue(ctx); err != nil && ctx.Err() == nil {
			d.cfg.Logger.Warn("notify: outbox", "err", err)
		}
		if now := d.cfg.Now(); now.Sub(refreshed) >= RefreshEvery {
			refreshed = now
			if _, err := d.Refresh(ctx); err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("notify: alertmanager refresh", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-t.C:
		}
	}
}

// Refresh re-posts every firing alert without a known end to the Alertmanagers that were
// notified of it, and returns how many posts succeeded. A failed refresh is not retried:
// the next one comes within RefreshEvery, well inside the Hold.
func (d *Dispatcher) Refresh(ctx context.Context) (int, error) {
	firing, err := d.cfg.Store.ListAlerts(ctx, alertstore.AlertFilter{State: alertstore.StateFiring, Limit: 1000})
	if err != nil {
		return 0, err
	}
	n := 0
	var firstErr error
	for _, a := range firing {
		if !a.EndsAt.IsZero() {
			continue // an event alert: Alertmanager already knows its end
		}
		sent := map[string]bool{}
		for _, c := range a.History {
			am, ok := d.cfg.Receivers[c.By].(*Alertmanager)
			if c.What != "notified" || !ok || sent[c.By] {
				continue
			}
			sent[c.By] = true
			sctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
			err := am.Notify(sctx, Notification{NoticeID: a.ID + "/" + Refreshed + "/" + c.By, Event: Refreshed, Alert: a, Links: d.links(&a)})
			cancel()
			if err == nil {
				n++
			} else if firstErr == nil {
				firstErr = err
			}
		}
	}
	return n, firstErr
}

// DeliverDue delivers every notice due now, once, and returns how many were delivered.
func (d *Dispatcher) DeliverDue(ctx context.Context) (int, error) {
	now := d.cfg.Now()
	pending, err := d.cfg.Store.PendingAlerts(ctx, now, 1000)
	if err != nil {
		return 0, err
	}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		delivered int
		firstErr  error
		sem       = make(chan struct{}, d.cfg.Parallelism)
	)
	for _, a := range pending {
		for _, n := range a.Outbox {
			if n.NextAt.After(now) {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func(id string, n alertstore.Notice) {
				defer func() { <-sem; wg.Done() }()
				ok, err := d.deliver(ctx, id, n, now)
				mu.Lock()
				defer mu.Unlock()
				if ok {
					delivered++
				}
				if err != nil && firstErr == nil {
					firstErr = err
				}
			}(a.ID, n)
		}
	}
	wg.Wait()
	return delivered, firstErr
}

var errGone = errors.New("notice no longer due")

// deliver claims notice n of alert id, sends it and records the outcome.
func (d *Dispatcher) deliver(ctx context.Context, id string, n alertstore.Notice, now time.Time) (bool, error) {
	// Claim: push NextAt past the lease so no other dispatcher takes it meanwhile.
	a, err := d.cfg.Store.UpdateAlert(ctx, id, func(a *alertstore.Alert) error {
		i := noticeIndex(a, n.ID)
		if i < 0 || a.Outbox[i].NextAt.After(now) {
			return errGone
		}
		a.Outbox[i].NextAt = now.Add(d.cfg.Lease)
		return nil
	})
	if errors.Is(err, errGone) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("notify: claim %s/%s: %w", id, n.ID, err)
	}
	rcv, known := d.cfg.Receivers[n.Receiver]
	var sendErr error
	if !known {
		sendErr = retry.Permanent(fmt.Errorf("unknown receiver %q", n.Receiver))
	} else {
		sctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
		sendErr = rcv.Notify(sctx, Notification{NoticeID: n.ID, Event: n.Event, Alert: a, Links: d.links(&a)})
		cancel()
	}
	if sendErr != nil && ctx.Err() != nil {
		return false, nil // shutting down: the lease runs out and the next dispatcher sends it
	}
	done := d.cfg.Now()
	_, err = d.cfg.Store.UpdateAlert(context.WithoutCancel(ctx), id, func(a *alertstore.Alert) error {
		i := noticeIndex(a, n.ID)
		if i < 0 {
			return errGone
		}
		if sendErr == nil {
			a.Outbox = append(a.Outbox[:i], a.Outbox[i+1:]...)
			a.History = append(a.History, alertstore.Change{At: done, What: "notified", By: n.Receiver, Note: n.Event})
			return nil
		}
		nt := &a.Outbox[i]
		nt.Attempts++
		nt.LastErr = sendErr.Error()
		if retry.IsPermanent(sendErr) || nt.Attempts >= d.cfg.MaxAttempts {
			a.Outbox = append(a.Outbox[:i], a.Outbox[i+1:]...)
			a.History = append(a.History, alertstore.Change{At: done, What: "notify failed", By: n.Receiver,
				Note: fmt.Sprintf("%s after %d attempt(s): %v", n.Event, nt.Attempts, sendErr)})
			return nil
		}
		nt.NextAt = done.Add(d.backoff(nt.Attempts))
		return nil
	})
	if sendErr != nil {
		d.failed.WithLabelValues(n.Receiver).Inc()
		d.cfg.Logger.Warn("notify: delivery failed", "alert", id, "receiver", n.Receiver, "err", sendErr)
	} else {
		d.sent.WithLabelValues(n.Receiver).Inc()
		if n.Event == Fired {
			d.latency.Observe(done.Sub(a.StartsAt).Seconds())
		}
	}
	if errors.Is(err, errGone) {
		err = nil
	}
	return sendErr == nil, err
}

func (d *Dispatcher) backoff(attempts int) time.Duration {
	b := d.cfg.BackoffMin
	for i := 1; i < attempts && b < d.cfg.BackoffMax; i++ {
		b *= 2
	}
	return min(b, d.cfg.BackoffMax)
}

func noticeIndex(a *alertstore.Alert, id string) int {
	for i := range a.Outbox {
		if a.Outbox[i].ID == id {
			return i
		}
	}
	return -1
}

func (d *Dispatcher) links(a *alertstore.Alert) Links {
	l := Links{Alert: d.cfg.LinkBase + "/api/v1/alerts/" + a.ID}
	if a.Signature != "" {
		l.Events = d.cfg.LinkBase + "/api/v1/events?signature=" + a.Signature
	}
	for _, t := range a.TraceIDs {
		l.Traces = append(l.Traces, d.cfg.LinkBase+"/api/v1/traces/"+t)
	}
	return l
}
