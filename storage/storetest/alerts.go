package storetest

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// AlertStore runs the alert store contract against the backend open returns (a fresh, empty
// store per call).
func AlertStore(t *testing.T, open func(t *testing.T) alertstore.Store) {
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	alert := func(id, key string, starts time.Time) alertstore.Alert {
		return alertstore.Alert{ID: id, Key: key, Kind: alertstore.KindEvent, Level: alertstore.LevelWarning,
			State: alertstore.StateFiring, Service: "pay", Summary: "boom", Count: 1, StartsAt: starts}
	}

	t.Run("CreateIsIdempotentAndKeyHasOneFiring", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		a := alert("a1", "sig-1", t0)
		if ok, err := s.CreateAlert(ctx, a); err != nil || !ok {
			t.Fatalf("create: %v %v", ok, err)
		}
		a.Summary = "changed"
		if ok, err := s.CreateAlert(ctx, a); err != nil || ok {
			t.Fatalf("second create of the same id: created=%v err=%v, want false nil", ok, err)
		}
		if got, _ := s.GetAlert(ctx, "a1"); got.Summary != "boom" {
			t.Fatalf("a replayed create changed the alert: %q", got.Summary)
		}
		if ok, err := s.CreateAlert(ctx, alert("a2", "sig-1", t0.Add(time.Minute))); err != nil || !ok {
			t.Fatalf("create a2: %v %v", ok, err)
		}
		old, _ := s.GetAlert(ctx, "a1")
		if old.State != alertstore.StateResolved || !old.ResolvedAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("a new firing alert of the key must resolve the old one: %+v", old)
		}
		open, ok, err := s.OpenAlert(ctx, "sig-1")
		if err != nil || !ok || open.ID != "a2" {
			t.Fatalf("open alert of sig-1 = %v %v %v, want a2", open.ID, ok, err)
		}
		if _, err := s.CreateAlert(ctx, alertstore.Alert{ID: "x"}); !errors.Is(err, alertstore.ErrInvalid) {
			t.Fatalf("alert without key: %v, want ErrInvalid", err)
		}
		nan := alert("nan", "sig-nan", t0)
		nan.Value = math.NaN()
		if _, err := s.CreateAlert(ctx, nan); !errors.Is(err, alertstore.ErrInvalid) {
			t.Fatalf("alert with a NaN value: %v, want ErrInvalid (retrying cannot store it)", err)
		}
	})

	t.Run("UpdateListPending", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		for i := range 5 {
			a := alert(fmt.Sprintf("a%d", i), fmt.Sprintf("k%d", i), t0.Add(time.Duration(i)*time.Second))
			if i%2 == 1 {
				a.Level, a.Service = alertstore.LevelAlarm, "order"
			}
			if i == 3 {
				a.Outbox = []alertstore.Notice{{ID: "n1", Receiver: "hook", Event: "fired", NextAt: t0.Add(time.Hour)}}
			}
			if _, err := s.CreateAlert(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ListAlerts(ctx, alertstore.AlertFilter{Level: alertstore.LevelAlarm})
		if err != nil || len(got) != 2 || got[0].ID != "a3" || got[1].ID != "a1" {
			t.Fatalf("alarm alerts newest first = %v %v, want a3 a1", ids(got), err)
		}
		if got, _ := s.ListAlerts(ctx, alertstore.AlertFilter{Service: "pay", Limit: 2}); len(got) != 2 || got[0].ID != "a4" {
			t.Fatalf("pay alerts limit 2 = %v", ids(got))
		}
		if p, _ := s.PendingAlerts(ctx, t0, 10); len(p) != 0 {
			t.Fatalf("a notice due in an hour is pending now: %v", ids(p))
		}
		if p, _ := s.PendingAlerts(ctx, t0.Add(time.Hour), 10); len(p) != 1 || p[0].ID != "a3" {
			t.Fatalf("pending at +1h = %v, want a3", ids(p))
		}
		up, err := s.UpdateAlert(ctx, "a3", func(a *alertstore.Alert) error {
			a.Outbox, a.State, a.ResolvedAt = nil, alertstore.StateResolved, t0.Add(2*time.Hour)
			return nil
		})
		if err != nil || up.State != alertstore.StateResolved {
			t.Fatalf("update: %v %v", up.State, err)
		}
		if p, _ := s.PendingAlerts(ctx, t0.Add(3*time.Hour), 10); len(p) != 0 {
			t.Fatalf("emptied outbox still pending: %v", ids(p))
		}
		if _, ok, _ := s.OpenAlert(ctx, "k3"); ok {
			t.Fatal("resolved alert still open under its key")
		}
		if got, _ := s.ListAlerts(ctx, alertstore.AlertFilter{State: alertstore.StateFiring}); len(got) != 4 {
			t.Fatalf("firing = %v, want 4", ids(got))
		}
		boom := errors.New("boom")
		if _, err := s.UpdateAlert(ctx, "a0", func(a *alertstore.Alert) error { a.Summary = "x"; return boom }); !errors.Is(err, boom) {
			t.Fatalf("fn error = %v", err)
		}
		if a, _ := s.GetAlert(ctx, "a0"); a.Summary != "boom" {
			t.Fatal("an aborted update was stored")
		}
		if _, err := s.UpdateAlert(ctx, "nope", func(*alertstore.Alert) error { return nil }); !errors.Is(err, alertstore.ErrNotFound) {
			t.Fatalf("update of a missing alert: %v", err)
		}
	})

	t.Run("Silences", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		sil, err := s.PutSilence(ctx, alertstore.Silence{Matchers: []alertstore.Matcher{{Name: "service", Value: "pay"}},
			StartsAt: t0, EndsAt: t0.Add(time.Hour), CreatedBy: "ops"})
		if err != nil || sil.ID == "" {
			t.Fatalf("put silence: %v %q", err, sil.ID)
		}
		if _, err := s.PutSilence(ctx, alertstore.Silence{StartsAt: t0, EndsAt: t0.Add(time.Hour), CreatedBy: "ops"}); !errors.Is(err, alertstore.ErrInvalid) {
			t.Fatalf("silence without matchers: %v", err)
		}
		sil.EndsAt = t0 // expire it
		if _, err := s.PutSilence(ctx, sil); !errors.Is(err, alertstore.ErrInvalid) {
			t.Fatalf("silence ending at its start: %v", err)
		}
		sil.EndsAt = t0.Add(time.Minute)
		if _, err := s.PutSilence(ctx, sil); err != nil {
			t.Fatal(err)
		}
		all, err := s.Silences(ctx)
		if err != nil || len(all) != 1 || !all[0].EndsAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("silences = %+v %v", all, err)
		}
		if got, err := s.GetSilence(ctx, sil.ID); err != nil || got.CreatedBy != "ops" {
			t.Fatalf("get silence: %+v %v", got, err)
		}
	})

	t.Run("RulesAndStrategiesAreVersioned", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		five := 5.0
		r := alertstore.Rule{Name: "err-rate", Kind: alertstore.RuleMetric,
			Conditions: []alertstore.Condition{{Metric: "error_rate", Op: ">", Warning: &five}}}
		r1, err := s.PutRule(ctx, r, 0, "alice")
		if err != nil || r1.Version != 1 || r1.UpdatedBy != "alice" {
			t.Fatalf("put v1: %+v %v", r1.Versioned, err)
		}
		if _, err := s.PutRule(ctx, r, 0, "bob"); !errors.Is(err, alertstore.ErrConflict) {
			t.Fatalf("put at a stale version: %v, want ErrConflict", err)
		}
		r.For = 3
		if r2, err := s.PutRule(ctx, r, 1, "bob"); err != nil || r2.Version != 2 {
			t.Fatalf("put v2: %+v %v", r2.Versioned, err)
		}
		if _, err := s.PutRule(ctx, alertstore.Rule{Name: "bad", Kind: alertstore.RuleMetric}, 0, "x"); !errors.Is(err, alertstore.ErrInvalid) {
			t.Fatalf("rule without conditions: %v", err)
		}
		if got, _ := s.GetRule(ctx, "err-rate", 0); got.For != 3 || got.Version != 2 {
			t.Fatalf("current = %+v", got)
		}
		if got, _ := s.GetRule(ctx, "err-rate", 1); got.For != 0 {
			t.Fatalf("version 1 = %+v", got)
		}
		other := alertstore.Rule{Name: "boom", Kind: alertstore.RuleEvent, Match: alertstore.EventMatch{Type: "exception"}}
		if _, err := s.PutRule(ctx, other, 0, "x"); err != nil {
			t.Fatal(err)
		}
		if all, _ := s.Rules(ctx); len(all) != 2 || all[0].Name != "boom" || all[1].Version != 2 {
			t.Fatalf("rules = %+v", all)
		}
		if err := s.DeleteRule(ctx, "err-rate", 1, "x"); !errors.Is(err, alertstore.ErrConflict) {
			t.Fatalf("delete at a stale version: %v", err)
		}
		if err := s.DeleteRule(ctx, "err-rate", 2, "carol"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetRule(ctx, "err-rate", 0); !errors.Is(err, alertstore.ErrNotFound) {
			t.Fatalf("deleted rule: %v", err)
		}
		if h, _ := s.RuleHistory(ctx, "err-rate"); len(h) != 3 || !h[2].Deleted || h[2].UpdatedBy != "carol" {
			t.Fatalf("history = %+v", h)
		}
		if all, _ := s.Rules(ctx); len(all) != 1 {
			t.Fatalf("rules after delete = %+v", all)
		}
		st := alertstore.Strategy{Name: "payments", Rules: []string{"boom"},
			Selectors: []alertstore.Selector{{Service: "pay*"}}, Receivers: map[string][]string{"alarm": {"hook"}}}
		if got, err := s.PutStrategy(ctx, st, 0, "x"); err != nil || got.Version != 1 {
			t.Fatalf("put strategy: %v", err)
		}
		if got, _ := s.Strategies(ctx); len(got) != 1 || !got[0].Applies("", "payment", "", "") {
			t.Fatalf("strategies = %+v", got)
		}
		if h, _ := s.StrategyHistory(ctx, "payments"); len(h) != 1 {
			t.Fatalf("strategy history = %+v", h)
		}
	})

	t.Run("Events", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		var evs []alertstore.StoredEvent
		for i := range 6 {
			svc := []string{"pay", "order"}[i%2]
			evs = append(evs, alertstore.StoredEvent{ID: fmt.Sprintf("e%d", i), Signature: "sig-" + svc,
				Event: schemas.Event{TimeUnixNano: t0.Add(time.Duration(i) * time.Second).UnixNano(), Service: svc,
					Type: schemas.EventException, Name: "E", Message: fmt.Sprint(i)}})
		}
		if err := s.PutEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if err := s.PutEvents(ctx, evs[:2]); err != nil { // a replay stores nothing twice
			t.Fatal(err)
		}
		got, err := s.SearchEvents(ctx, alertstore.EventQuery{Service: "pay", To: t0.Add(time.Hour)})
		if err != nil || len(got) != 3 || got[0].ID != "e4" {
			t.Fatalf("pay events = %v %v, want e4 e2 e0", evIDs(got), err)
		}
		got, _ = s.SearchEvents(ctx, alertstore.EventQuery{Signature: "sig-order", From: t0.Add(2 * time.Second), To: t0.Add(4 * time.Second)})
		if len(got) != 1 || got[0].ID != "e3" {
			t.Fatalf("sig-order in [2s,4s] = %v, want e3", evIDs(got))
		}
		if got, _ := s.SearchEvents(ctx, alertstore.EventQuery{Type: schemas.EventException, To: t0.Add(time.Hour), Limit: 2}); len(got) != 2 || got[0].ID != "e5" {
			t.Fatalf("exceptions limit 2 = %v", evIDs(got))
		}
		if got, _ := s.SearchEvents(ctx, alertstore.EventQuery{Service: "pay", Type: "breaker", To: t0.Add(time.Hour)}); len(got) != 0 {
			t.Fatalf("pay breakers = %v, want none", evIDs(got))
		}
		if e, err := s.GetEvent(ctx, "e1"); err != nil || e.Event.Message != "1" {
			t.Fatalf("get e1: %+v %v", e, err)
		}
		if err := s.DropEventsBefore(ctx, t0.Add(3*time.Second)); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.SearchEvents(ctx, alertstore.EventQuery{To: t0.Add(time.Hour)}); len(got) != 3 || got[2].ID != "e3" {
			t.Fatalf("after retention = %v, want e5 e4 e3", evIDs(got))
		}
		if _, err := s.GetEvent(ctx, "e0"); !errors.Is(err, alertstore.ErrNotFound) {
			t.Fatalf("dropped event: %v", err)
		}
	})

	t.Run("PartitionStateNeverGoesBack", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		if _, ok, err := s.Partition(ctx, "g", "t", 0); ok || err != nil {
			t.Fatalf("empty store has state: %v %v", ok, err)
		}
		save := func(off int64, st string) {
			if err := s.SavePartition(ctx, alertstore.PartitionState{Group: "g", Topic: "t", Partition: 0, Offset: off, State: []byte(st)}); err != nil {
				t.Fatal(err)
			}
		}
		save(10, "ten")
		save(20, "twenty")
		save(15, "stale")
		p, ok, err := s.Partition(ctx, "g", "t", 0)
		if err != nil || !ok || p.Offset != 20 || string(p.State) != "twenty" {
			t.Fatalf("state = %+v %v %v, want offset 20", p, ok, err)
		}
		if _, ok, _ := s.Partition(ctx, "g", "t", 1); ok {
			t.Fatal("partition 1 has partition 0's state")
		}
	})
}

func ids(as []alertstore.Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func evIDs(es []alertstore.StoredEvent) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}
