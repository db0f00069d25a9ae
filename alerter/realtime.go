package alerter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/alerter/converge"
	"github.com/mercury-apm/mercury/alerter/signature"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// realtime turns mercury.events into convergence alerts, one converge.Partition per input
// partition. Ownership follows the consumer group: a partition's state is loaded from the
// store with its first message after an assignment (the state saved with the last commit,
// possibly ahead of it: offsets it already reflects are skipped) and dropped when the
// partition is revoked (or a batch failed, to be retried from the saved state). The saved
// state never goes back (see alertstore.Store.SavePartition), alert ids are a function of
// the opening event's offset, and the store creates an id once: a rebalance or a kill
// neither loses an alert nor fires one twice.
type realtime struct {
	a     *Alerter
	topic string
	parts map[int]*partition
}

type partition struct {
	conv   *converge.Partition
	events []alertstore.StoredEvent
	dirty  map[string]*converge.Window // windows whose counts changed since the last flush
	saved  bool                        // false: conv changed since it was saved
}

func newRealtime(a *Alerter, topic string) *realtime {
	return &realtime{a: a, topic: topic, parts: map[int]*partition{}}
}

// EventID names an event by where it is in the log, so a replay stores it once.
func EventID(topic string, partition int, offset int64) string {
	return fmt.Sprintf("%s-%d-%d", topic, partition, offset)
}

// own returns the partition's state, loading the saved one when the partition has none in
// memory (it was just assigned).
func (r *realtime) own(ctx context.Context, part int, offset int64) (*partition, error) {
	if p := r.parts[part]; p != nil {
		return p, nil
	}
	var st alertstore.PartitionState
	var ok bool
	err := r.a.retry(ctx, func() (err error) {
		st, ok, err = r.a.cfg.Store.Partition(ctx, r.a.cfg.Group, r.topic, part)
		return err
	})
	if err != nil {
		return nil, err
	}
	conv := converge.New(offset)
	if ok {
		if conv, err = converge.Unmarshal(st.State); err != nil {
			return nil, err
		}
		if conv.Next < offset {
			// Offsets the state never saw: compacted, expired by retention, or control
			// records; the state carries on from here.
			r.a.cfg.Logger.Info("alerter: partition resumes past its saved state", "partition", part, "state_next", conv.Next, "offset", offset)
		}
	}
	p := &partition{conv: conv, dirty: map[string]*converge.Window{}, saved: true}
	r.parts[part] = p
	return p, nil
}

func (r *realtime) handle(ctx context.Context, m kafka.Message) error {
	p, err := r.own(ctx, m.Partition, m.Offset)
	if err != nil {
		return err
	}
	if m.Offset < p.conv.Next {
		return nil // reflected in the saved state: done by the previous owner
	}
	r.a.events.Inc()
	var ev schemas.Event
	if err := schemas.Unmarshal(m.Value, &ev); err != nil {
		p.conv.Next, p.saved = m.Offset+1, false
		return retry.Permanent(fmt.Errorf("decode event: %w", err))
	}
	rule := r.a.rules.Load().forEvent(&ev)
	depth := rule.rule.StackDepth
	if depth == 0 {
		depth = r.a.cfg.StackDepth
	}
	sig := signature.Of(&ev, rule.rule.Fingerprint, depth)
	id := EventID(r.topic, m.Partition, m.Offset)
	p.events = append(p.events, alertstore.StoredEvent{ID: id, Signature: sig, Event: ev})
	p.saved = false
	if rule.rule.Ignore || ev.Dyed {
		// Ignored, or from a dyed load test: stored and searchable, but nobody is paged for
		// a failure the test provoked.
		p.conv.Next = m.Offset + 1
		return nil
	}
	window := time.Duration(rule.rule.Window)
	if window == 0 {
		window = r.a.cfg.Window
	}
	trace := ""
	if !ev.TraceID.IsZero() {
		trace = ev.TraceID.String()
	}
	d, err := p.conv.Apply(converge.Occurrence{Offset: m.Offset, Time: ev.TimeUnixNano, Signature: sig, Host: ev.Host,
		EventID: id, TraceID: trace, Window: window}, converge.AlertID(r.topic, m.Partition, m.Offset))
	if err != nil {
		return err
	}
	if !d.Fire {
		r.a.suppressed.Inc()
		p.dirty[sig] = d.Window
		return nil
	}
	if d.Closed != nil {
		if err := r.close(ctx, d.Closed, time.Unix(0, min(d.Closed.End, ev.TimeUnixNano))); err != nil {
			return err
		}
		delete(p.dirty, sig)
	}
	level := rule.eventLevel(&ev)
	_, err = r.a.fire(ctx, r.eventAlert(&ev, sig, rule, level, d.Window), rule.receivers(level, r.a.cfg.DefaultReceivers))
	return err
}

// eventAlert is the alert a window's first occurrence raises.
func (r *realtime) eventAlert(ev *schemas.Event, sig string, b bound, level string, w *converge.Window) alertstore.Alert {
	msg := ev.Message
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	summary := fmt.Sprintf("%s: %s %s: %s", ev.Service, ev.Type, ev.Name, msg)
	if w.PrevSuppressed > 0 {
		summary += fmt.Sprintf(" (again; %d more in the last window from %d host(s))", w.PrevSuppressed, w.PrevHostCount)
	}
	al := alertstore.Alert{ID: w.AlertID, Key: "event/" + sig, Kind: alertstore.KindEvent, Rule: b.rule.Name,
		Signature: sig, Level: level, State: alertstore.StateFiring, Domain: ev.Domain, Service: ev.Service,
		Operation: ev.Operation, Summary: summary, Count: 1, Hosts: slices.Clone(w.HostList()), HostCount: len(w.Hosts),
		PrevSuppressed: w.PrevSuppressed, PrevHosts: w.PrevHosts,
		Labels: map[string]string{"type": ev.Type, "name": ev.Name, "host": ev.Host},
		Events: slices.Clone(w.Events), TraceIDs: slices.Clone(w.TraceIDs),
		StartsAt: time.Unix(0, w.Start).UTC(), EndsAt: time.Unix(0, w.End).UTC(), AsOf: w.LastOffset}
	if b.strategy != nil {
		al.Strategy = b.strategy.Name
	}
	return al
}

// counts copies a window's folded counts into its alert unless a newer writer got there.
func counts(w *converge.Window) func(*alertstore.Alert) error {
	return func(a *alertstore.Alert) error {
		if a.AsOf >= w.LastOffset && a.Suppressed >= w.Suppressed {
			return errUnchanged
		}
		a.Suppressed, a.Count = w.Suppressed, 1+w.Suppressed
		a.Hosts, a.HostCount = slices.Clone(w.HostList()), len(w.Hosts)
		a.Events, a.TraceIDs = slices.Clone(w.Events), slices.Clone(w.TraceIDs)
		a.AsOf = w.LastOffset
		return nil
	}
}

// close writes a window's final counts and resolves its alert (an event alert ends with
// its window; Alertmanager was told its endsAt when it fired).
func (r *realtime) close(ctx context.Context, w *converge.Window, at time.Time) error {
	_, _, err := r.a.update(ctx, w.AlertID, func(a *alertstore.Alert) error {
		err := counts(w)(a)
		if a.State == alertstore.StateFiring {
			a.State, a.ResolvedAt = alertstore.StateResolved, at.UTC()
			a.History = append(a.History, alertstore.Change{At: r.a.cfg.Now(), What: "resolved",
				Note: fmt.Sprintf("window ended: %d repeat(s) suppressed from %d host(s)", w.Suppressed, len(w.Hosts))})
			return nil
		}
		return err
	})
	if errors.Is(err, alertstore.ErrNotFound) {
		r.a.cfg.Logger.Warn("alerter: window's alert is missing from the store", "alert", w.AlertID)
		return nil
	}
	return err
}

// flush stores a partition's batch (events, counts) and saves its state: before the
// consumer commits the batch.
func (r *realtime) flush(ctx context.Context, part int) error {
	if p := r.parts[part]; p != nil {
		return r.flushPartition(ctx, part, p)
	}
	return nil
}

// tick closes the alerts of windows that have ended (processing time).
func (r *realtime) tick(ctx context.Context) error {
	now := r.a.cfg.Now().UnixNano()
	for _, p := range r.parts {
		for _, w := range p.conv.Ended(now) {
			if err := r.close(ctx, w, time.Unix(0, w.End)); err != nil {
				return err
			}
			w.MarkClosed()
		}
	}
	return nil
}

// assigned starts the partitions afresh: their state is loaded from the store with their
// first message (see own).
func (r *realtime) assigned(_ context.Context, parts []bus.Assignment) error {
	for _, p := range parts {
		delete(r.parts, p.Partition)
	}
	return nil
}

// revoked forgets the partitions: every batch of theirs was flushed before its commit, and
// the new owner starts from the saved state.
func (r *realtime) revoked(parts []int) {
	for _, p := range parts {
		delete(r.parts, p)
	}
}

func (r *realtime) flushPartition(ctx context.Context, part int, p *partition) error {
	if len(p.events) > 0 {
		if err := r.a.retry(ctx, func() error { return r.a.cfg.Store.PutEvents(ctx, p.events) }); err != nil {
			return err
		}
		clear(p.events)
		p.events = p.events[:0]
	}
	for sig, w := range p.dirty {
		if _, _, err := r.a.update(ctx, w.AlertID, counts(w)); err != nil && !errors.Is(err, alertstore.ErrNotFound) {
			return err
		}
		delete(p.dirty, sig)
	}
	if p.saved {
		return nil
	}
	blob, err := p.conv.Marshal()
	if err != nil {
		return err
	}
	st := alertstore.PartitionState{Group: r.a.cfg.Group, Topic: r.topic, Partition: part, Offset: p.conv.Next - 1, State: blob}
	if err := r.a.retry(ctx, func() error { return r.a.cfg.Store.SavePartition(ctx, st) }); err != nil {
		return err
	}
	p.saved = true
	return nil
}
