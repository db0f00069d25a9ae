// Package alerter is `mercury alerter`: real-time alerts from mercury.events, folded by
// signature within convergence windows whose ownership follows the topic's partitions;
// metric rules on mercury.metrics.1m; self-alerts from heartbeats and consumer lag. Every
// decision is written to the alert store with its notifications in the alert's outbox, and
// the dispatcher (alerter/notify) delivers them, to receivers and to mercury.alerts.
package alerter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/alerter/rules"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// publishReceiver is the built-in receiver that writes alert transitions to mercury.alerts.
const publishReceiver = "mercury.alerts"

// Alerter is the alerter daemon component.
type Alerter struct {
	cfg        Config
	dispatcher *notify.Dispatcher
	publisher  *publisher // nil with NoPublish
	rules      atomic.Pointer[ruleset]
	history    rules.History
	memory     *rules.MemoryHistory // set when History was nil: fed by the metric consumer
	evaluator  *rules.Evaluator
	ready      atomic.Bool
	mu         sync.Mutex
	consumers  []*bus.Consumer

	events, fired, suppressed, undecodable prometheus.Counter
	metricPoints, ruleTransitions          prometheus.Counter
	selfChecks                             prometheus.Counter
}

var _ daemon.Component = (*Alerter)(nil)

// New builds the alerter from cfg (see Config.Validate for the defaults).
func New(cfg Config) (*Alerter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	receivers, err := notify.Build(cfg.Receivers, cfg.Logger)
	if err != nil {
		return nil, err
	}
	receivers["log"] = notify.Log{Logger: cfg.Logger}
	a := &Alerter{cfg: cfg, history: cfg.History}
	if !cfg.NoPublish {
		p, err := newPublisher(cfg.Bus)
		if err != nil {
			return nil, err
		}
		a.publisher = p
		receivers[publishReceiver] = p
	}
	a.dispatcher, err = notify.NewDispatcher(notify.DispatcherConfig{Store: cfg.Store, Receivers: receivers,
		LinkBase: cfg.LinkBase, Logger: cfg.Logger, Now: cfg.Now, Lease: cfg.ClaimLease})
	if err != nil {
		return nil, err
	}
	if a.history == nil {
		a.memory = rules.NewMemoryHistory(8 * 24 * time.Hour)
		a.history = a.memory
	}
	a.evaluator = &rules.Evaluator{History: a.history, Quantiles: cfg.Quantiles}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "mercury_alerter_" + name + "_total", Help: help})
	}
	a.events = counter("events", "Events consumed from mercury.events.")
	a.fired = counter("alerts_fired", "Alerts fired (every kind).")
	a.suppressed = counter("events_suppressed", "Events folded into an open convergence window.")
	a.undecodable = counter("undecodable", "Records that could not be decoded (sent to mercury.dlq).")
	a.metricPoints = counter("metric_points", "Points consumed from mercury.metrics.1m.")
	a.ruleTransitions = counter("rule_transitions", "Metric and self rule transitions (fire, escalate, resolve).")
	a.selfChecks = counter("self_checks", "Heartbeats and lag samples checked for self-alerts.")
	if err := cfg.Telemetry.Register(append(a.dispatcher.Collectors(), a.events, a.fired, a.suppressed,
		a.undecodable, a.metricPoints, a.ruleTransitions, a.selfChecks)...); err != nil {
		return nil, err
	}
	return a, nil
}

// Run consumes events, metric points and heartbeats and delivers notifications until ctx
// ends; then it flushes counts and partition state, commits and returns nil.
func (a *Alerter) Run(ctx context.Context) error {
	defer func() {
		if a.publisher != nil {
			a.publisher.Close()
		}
	}()
	if err := a.reloadRules(ctx); err != nil {
		return err
	}
	// The broker may be down while the alerter (re)starts: wait for it rather than exit.
	for b := (retry.Backoff{Min: 200 * time.Millisecond, Max: 5 * time.Second}); ; {
		err := bus.EnsureTopics(ctx, a.cfg.Bus, nil, bus.TopicEvents, bus.TopicMetrics1m, bus.TopicHeartbeats, bus.TopicAlerts, bus.TopicDLQ)
		if err == nil {
			break
		}
		a.cfg.Logger.Warn("alerter: creating its topics, retrying", "err", err)
		if werr := b.Wait(ctx); werr != nil {
			return fmt.Errorf("%w (last: %w)", werr, err)
		}
	}
	g := daemon.NewGroup(ctx)
	g.Go("alerter rules", a.refreshRules)
	g.Go("alerter event retention", a.retainEvents)
	g.Go("alerter notify", a.dispatcher.Run)
	g.Go("alerter events", func(ctx context.Context) error {
		return a.consume(ctx, bus.TopicEvents, a.cfg.Group, newRealtime(a, bus.TopicEvents))
	})
	g.Go("alerter metrics", func(ctx context.Context) error {
		return a.consume(ctx, bus.TopicMetrics1m, a.cfg.Group+".metrics", &metricConsumer{a: a})
	})
	g.Go("alerter heartbeats", func(ctx context.Context) error {
		return a.consume(ctx, bus.TopicHeartbeats, a.cfg.Group+".heartbeats", newSelfWatch(a))
	})
	a.ready.Store(true)
	defer a.ready.Store(false)
	return g.Wait()
}

// Ready is nil once the rules are loaded and the consumers run without failing.
func (a *Alerter) Ready() error {
	if !a.ready.Load() {
		return errors.New("alerter: not running")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.consumers {
		if err := c.Err(); err != nil {
			return fmt.Errorf("alerter: consumer: %w", err)
		}
	}
	return nil
}

// Routes mounts nothing: the alert board's API is query/alerts, on the query daemon.
func (a *Alerter) Routes(*http.ServeMux) {}

func (a *Alerter) reloadRules(ctx context.Context) error {
	rs, err := loadRuleset(ctx, a.cfg.Store)
	if err != nil {
		return err
	}
	old := a.rules.Swap(rs)
	if old == nil || fmt.Sprint(old.problems) != fmt.Sprint(rs.problems) {
		for _, p := range rs.problems {
			a.cfg.Logger.Warn("alerter: " + p)
		}
	}
	return nil
}

func (a *Alerter) refreshRules(ctx context.Context) error {
	t := time.NewTicker(a.cfg.RulesRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := a.reloadRules(ctx); err != nil && ctx.Err() == nil {
				a.cfg.Logger.Warn("alerter: rules kept from the last load", "err", err)
			}
		}
	}
}

// retainEvents drops stored events older than EventRetention, at start and every hour.
func (a *Alerter) retainEvents(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := a.cfg.Store.DropEventsBefore(ctx, a.cfg.Now().Add(-a.cfg.EventRetention)); err != nil && ctx.Err() == nil {
			a.cfg.Logger.Warn("alerter: event retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// notices are the notifications of event for alert al to receivers (and mercury.alerts).
// A silenced alert notifies only mercury.alerts, the record of everything.
func (a *Alerter) notices(al *alertstore.Alert, event string, receivers []string) []alertstore.Notice {
	now := a.cfg.Now()
	var out []alertstore.Notice
	add := func(r string) {
		out = append(out, alertstore.Notice{ID: al.ID + "/" + event + "/" + r, Receiver: r, Event: event, NextAt: now})
	}
	if al.SilencedBy == "" {
		for _, r := range receivers {
			add(r)
		}
	}
	if a.publisher != nil {
		add(publishReceiver)
	}
	return out
}

// fire stores a new alert with its notices; created false when it existed (a replay).
func (a *Alerter) fire(ctx context.Context, al alertstore.Alert, receivers []string) (bool, error) {
	rs := a.rules.Load()
	now := a.cfg.Now()
	al.SilencedBy = rs.silencedBy(&al, now)
	al.History = append(al.History, alertstore.Change{At: now, What: "fired", Note: al.Summary})
	if al.SilencedBy != "" {
		al.History = append(al.History, alertstore.Change{At: now, What: "silenced", By: al.SilencedBy})
	}
	al.Outbox = a.notices(&al, notify.Fired, receivers)
	var created bool
	err := a.retry(ctx, func() (err error) {
		created, err = a.cfg.Store.CreateAlert(ctx, al)
		return err
	})
	if created {
		a.fired.Inc()
		a.dispatcher.Wake()
	}
	return created, err
}

var errUnchanged = errors.New("unchanged")

// update applies fn to a stored alert with retries; fn returning errUnchanged is not an error.
func (a *Alerter) update(ctx context.Context, id string, fn func(*alertstore.Alert) error) (alertstore.Alert, bool, error) {
	var out alertstore.Alert
	changed := true
	err := a.retry(ctx, func() (err error) {
		out, err = a.cfg.Store.UpdateAlert(ctx, id, fn)
		if errors.Is(err, errUnchanged) {
			changed, err = false, nil
		}
		return err
	})
	return out, changed, err
}

// retry runs op until it succeeds, fails for good (invalid, conflict, not found, closed)
// or ctx ends: the store's writes are idempotent, so repeating one is safe.
func (a *Alerter) retry(ctx context.Context, op func() error) error {
	b := retry.Backoff{Min: 50 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := op()
		if err == nil || errors.Is(err, alertstore.ErrInvalid) || errors.Is(err, alertstore.ErrConflict) ||
			errors.Is(err, alertstore.ErrNotFound) || errors.Is(err, alertstore.ErrClosed) {
			return err
		}
		a.cfg.Logger.Warn("alerter: store write failed, retrying", "err", err)
		if werr := b.Wait(ctx); werr != nil {
			return fmt.Errorf("%w (last: %w)", werr, err)
		}
	}
}
