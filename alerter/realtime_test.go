package alerter

import (
	"fmt"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

const chargeStack = "github.com/shop/pay.(*Service).Charge\n\t/src/pay/service.go:42\ngithub.com/shop/pay.handler\n\t/src/pay/http.go:17\n"

func exception(at time.Time, host, class, msg string) schemas.Event {
	return schemas.Event{TimeUnixNano: at.UnixNano(), Domain: "shop", Service: "payment", Host: host,
		Type: schemas.EventException, Name: class, Message: msg, Stack: chargeStack, Operation: "POST /pay",
		TraceID: schemas.TraceID{1, 2, 3}}
}

// The convergence of the issue: 1,000 identical exceptions from 200 hosts within 3 s give
// exactly one alert; the next after the window gives one more, with the suppressed count
// and the hosts; messages differing only in ids share the signature, other classes do not.
func TestConvergenceThousandExceptionsOneAlert(t *testing.T) {
	s := openStore(t)
	now := &wall{t: t0}
	hook, url := newWebhook(t)
	a := newTestAlerter(t, s, now, url)
	rt := newRealtime(a, bus.TopicEvents)
	ctx := t.Context()
	off := int64(0)
	feed := func(ev schemas.Event) {
		t.Helper()
		if err := rt.handle(ctx, eventMsg(t, 0, off, ev)); err != nil {
			t.Fatal(err)
		}
		off++
	}
	for i := range 1000 {
		at := t0.Add(time.Duration(i) * 3 * time.Millisecond) // 1,000 over 3 s
		feed(exception(at, fmt.Sprintf("pay-%03d", i%200), "*pay.DeclinedError", fmt.Sprintf("charge order %d failed: card %d declined", 100000+i, 4000+i)))
	}
	now.Set(t0.Add(3 * time.Second))
	if err := flushAll(ctx, rt); err != nil {
		t.Fatal(err)
	}
	got := alerts(t, s, alertstore.AlertFilter{})
	if len(got) != 1 {
		t.Fatalf("1,000 exceptions made %d alerts, want 1", len(got))
	}
	first := got[0]
	if first.Suppressed != 999 || first.Count != 1000 || first.HostCount != 200 || len(first.Hosts) != 20 ||
		first.State != alertstore.StateFiring || first.Level != alertstore.LevelWarning || len(first.TraceIDs) == 0 {
		t.Fatalf("alert after the burst: %+v", first)
	}
	if _, err := a.dispatcher.DeliverDue(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(hook.received()); n != 1 {
		t.Fatalf("webhook got %d notifications, want 1", n)
	}
	if evs, _ := s.SearchEvents(ctx, alertstore.EventQuery{Signature: first.Signature, To: t0.Add(time.Hour), Limit: 1000}); len(evs) != 1000 {
		t.Fatalf("stored %d events of the signature, want 1000", len(evs))
	}

	// Once the window has passed (processing time) the alert is resolved with its counts.
	now.Set(t0.Add(11 * time.Second))
	if err := flushAll(ctx, rt); err != nil {
		t.Fatal(err)
	}
	if a1, _ := s.GetAlert(ctx, first.ID); a1.State != alertstore.StateResolved || !a1.ResolvedAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("first alert after its window: %s resolved at %v", a1.State, a1.ResolvedAt)
	}

	// The next occurrence after the window alerts again and reports the suppressed repeats.
	feed(exception(t0.Add(12*time.Second), "pay-007", "*pay.DeclinedError", "charge order 123456 failed: card 9999 declined"))
	// A different class is a different problem, even with the same message.
	feed(exception(t0.Add(12*time.Second), "pay-007", "*net.OpError", "charge order 123456 failed: card 9999 declined"))
	if err := flushAll(ctx, rt); err != nil {
		t.Fatal(err)
	}
	got = alerts(t, s, alertstore.AlertFilter{State: alertstore.StateFiring})
	if len(got) != 2 {
		t.Fatalf("after the window: %d firing alerts, want 2", len(got))
	}
	var again, other alertstore.Alert
	for _, al := range got {
		if al.Signature == first.Signature {
			again = al
		} else {
			other = al
		}
	}
	if again.ID == "" || again.ID == first.ID || again.PrevSuppressed != 999 || len(again.PrevHosts) != 20 {
		t.Fatalf("second alert of the signature: %+v", again)
	}
	if other.ID == "" || other.Suppressed != 0 || other.Labels["name"] != "*net.OpError" {
		t.Fatalf("other class: %+v", other)
	}
	if n, _ := a.dispatcher.DeliverDue(ctx); n != 2 {
		t.Fatalf("delivered %d, want 2", n)
	}
	bodies := hook.received()
	if last := bodies[len(bodies)-2:]; last[0].Alert.PrevSuppressed+last[1].Alert.PrevSuppressed != 999 {
		t.Fatalf("webhook bodies do not carry the suppressed count: %+v", last)
	}
}

// A rebalance replays the partition from the committed offset: the new owner loads the
// state saved with it, skips what it reflects, and fires nothing twice.
func TestNewOwnerResumesFromSavedState(t *testing.T) {
	s := openStore(t)
	now := &wall{t: t0}
	_, url := newWebhook(t)
	ctx := t.Context()
	var msgs []schemas.Event
	for i := range 60 { // three signatures, a window every 10 s, events every second
		at := t0.Add(time.Duration(i/3) * time.Second)
		msgs = append(msgs, exception(at, fmt.Sprintf("h%d", i%7), fmt.Sprintf("E%d", i%3), "boom"))
	}
	run := func(rt *realtime, from, to int) {
		for i := from; i < to; i++ {
			if err := rt.handle(ctx, eventMsg(t, 2, int64(100+i), msgs[i])); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Reference: one owner throughout.
	ref := openStore(t)
	one := newRealtime(newTestAlerter(t, ref, now, url), bus.TopicEvents)
	run(one, 0, 60)
	if err := flushAll(ctx, one); err != nil {
		t.Fatal(err)
	}
	want := alerts(t, ref, alertstore.AlertFilter{})

	// Owner A processes 0..40, saves (flush) at 25, then dies; B resumes from offset 25's
	// commit and replays 25..40 before going on.
	a := newRealtime(newTestAlerter(t, s, now, url), bus.TopicEvents)
	run(a, 0, 25)
	if err := flushAll(ctx, a); err != nil {
		t.Fatal(err)
	}
	run(a, 25, 40) // alerts fired, counts not saved: lost with A
	b := newRealtime(newTestAlerter(t, s, now, url), bus.TopicEvents)
	run(b, 25, 60)
	if err := flushAll(ctx, b); err != nil {
		t.Fatal(err)
	}
	got := alerts(t, s, alertstore.AlertFilter{})
	if len(got) != len(want) {
		t.Fatalf("with a rebalance: %d alerts, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Suppressed != want[i].Suppressed || got[i].PrevSuppressed != want[i].PrevSuppressed {
			t.Fatalf("alert %d: %s suppressed %d/%d, want %s %d/%d", i, got[i].ID, got[i].Suppressed, got[i].PrevSuppressed,
				want[i].ID, want[i].Suppressed, want[i].PrevSuppressed)
		}
	}
	// And A, given the partition back later (its state was dropped when it was revoked),
	// starts from B's.
	a.revoked([]int{2})
	if err := a.handle(ctx, eventMsg(t, 2, 160, msgs[59])); err != nil {
		t.Fatal(err)
	}
	if a.parts[2].conv.Next != 161 {
		t.Fatalf("returning owner did not start from the saved state: next %d", a.parts[2].conv.Next)
	}
}

func TestUndecodableEventIsPermanentAndSkipped(t *testing.T) {
	s := openStore(t)
	now := &wall{t: t0}
	_, url := newWebhook(t)
	rt := newRealtime(newTestAlerter(t, s, now, url), bus.TopicEvents)
	m := eventMsg(t, 0, 0, exception(t0, "h", "E", "x"))
	m.Value = []byte("not avro")
	err := rt.handle(t.Context(), m)
	if !retry.IsPermanent(err) {
		t.Fatalf("undecodable event: %v, want a permanent error", err)
	}
	if err := rt.handle(t.Context(), eventMsg(t, 0, 1, exception(t0, "h", "E", "x"))); err != nil {
		t.Fatal(err)
	}
	if err := flushAll(t.Context(), rt); err != nil {
		t.Fatal(err)
	}
	if got := alerts(t, s, alertstore.AlertFilter{}); len(got) != 1 {
		t.Fatalf("after a poison record: %d alerts, want 1", len(got))
	}
	st, ok, _ := s.Partition(t.Context(), "alerter", bus.TopicEvents, 0)
	if !ok || st.Offset != 1 {
		t.Fatalf("saved state offset %d, want 1 (the poison record counted as done)", st.Offset)
	}
}

func dyed(ev schemas.Event) schemas.Event { ev.Dyed = true; return ev }

func TestEventRulesWindowFingerprintIgnoreAndSilence(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	now := &wall{t: t0}
	_, url := newWebhook(t)
	for _, r := range []alertstore.Rule{
		{Name: "breaker-open", Kind: alertstore.RuleEvent, Match: alertstore.EventMatch{Type: schemas.EventBreaker, Attributes: map[string]string{"to": "open"}},
			Window: alertstore.Duration(30 * time.Second), Level: alertstore.LevelAlarm, Fingerprint: []string{"service", "attr:route"}},
		{Name: "breaker-other", Kind: alertstore.RuleEvent, Match: alertstore.EventMatch{Type: schemas.EventBreaker}, Ignore: true},
	} {
		if _, err := s.PutRule(ctx, r, 0, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutStrategy(ctx, alertstore.Strategy{Name: "gateway", Rules: []string{"breaker-open", "breaker-other"},
		Selectors: []alertstore.Selector{{Service: "gateway"}}}, 0, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSilence(ctx, alertstore.Silence{Matchers: []alertstore.Matcher{{Name: "service", Value: "payment"}},
		StartsAt: t0, EndsAt: t0.Add(time.Hour), CreatedBy: "ops"}); err != nil {
		t.Fatal(err)
	}
	a := newTestAlerter(t, s, now, url)
	rt := newRealtime(a, bus.TopicEvents)
	breaker := func(at time.Duration, route, to string) schemas.Event {
		return schemas.Event{TimeUnixNano: t0.Add(at).UnixNano(), Service: "gateway", Host: "gw1", Type: schemas.EventBreaker,
			Name: route, Message: "breaker_state from=closed to=" + to,
			Attributes: []schemas.KV{{Key: "route", Value: route}, {Key: "to", Value: to}}}
	}
	for i, ev := range []schemas.Event{
		breaker(0, "/pay", "open"),
		breaker(5*time.Second, "/pay", "closed"),  // ignored
		breaker(20*time.Second, "/pay", "open"),   // within the rule's 30 s: folded
		breaker(20*time.Second, "/cart", "open"),  // another route
		exception(t0, "h1", "E", "silenced"),      // silenced by service=payment
		dyed(exception(t0, "h1", "Load", "test")), // a load test's: stored, no alert
	} {
		if err := rt.handle(ctx, eventMsg(t, 0, int64(i), ev)); err != nil {
			t.Fatal(err)
		}
	}
	if err := flushAll(ctx, rt); err != nil {
		t.Fatal(err)
	}
	got := alerts(t, s, alertstore.AlertFilter{})
	bySvc := map[string][]alertstore.Alert{}
	for _, al := range got {
		bySvc[al.Service] = append(bySvc[al.Service], al)
	}
	gw := bySvc["gateway"]
	if len(gw) != 2 || gw[0].Level != alertstore.LevelAlarm || gw[0].Rule != "breaker-open" || gw[0].Strategy != "gateway" {
		t.Fatalf("gateway alerts: %+v", gw)
	}
	for _, al := range gw {
		if al.Labels["name"] == "/pay" && al.Suppressed != 1 {
			t.Fatalf("/pay: suppressed %d, want 1 (the closed transition is ignored)", al.Suppressed)
		}
		if !al.EndsAt.Equal(al.StartsAt.Add(30 * time.Second)) {
			t.Fatalf("rule window not applied: %v → %v", al.StartsAt, al.EndsAt)
		}
	}
	pay := bySvc["payment"]
	if len(pay) != 1 || pay[0].SilencedBy == "" || len(pay[0].Outbox) != 0 {
		t.Fatalf("silenced alert (and none for the dyed event): %+v", pay)
	}
	if evs, _ := s.SearchEvents(ctx, alertstore.EventQuery{Service: "payment", To: t0.Add(time.Hour)}); len(evs) != 2 {
		t.Fatalf("stored payment events: %d, want 2 (the dyed one too)", len(evs))
	}
}

// Without rules, a gateway transition that reports a recovery alerts nobody; the failure
// it recovers from does.
func TestDefaultRulesDoNotPageForRecoveries(t *testing.T) {
	s := openStore(t)
	now := &wall{t: t0}
	_, url := newWebhook(t)
	rt := newRealtime(newTestAlerter(t, s, now, url), bus.TopicEvents)
	transition := func(typ, k, v string) schemas.Event {
		return schemas.Event{TimeUnixNano: t0.UnixNano(), Service: "gateway", Host: "gw1", Type: typ, Name: "/pay",
			Message: typ + " " + k + "=" + v, Attributes: []schemas.KV{{Key: k, Value: v}}}
	}
	for i, ev := range []schemas.Event{
		transition(schemas.EventBreaker, "to", "half-open"),
		transition(schemas.EventBreaker, "to", "closed"),
		transition(schemas.EventUpstreamHealth, "healthy", "true"),
		transition(schemas.EventDegrade, "on", "false"),
		transition(schemas.EventBreaker, "to", "open"),
		transition(schemas.EventUpstreamHealth, "healthy", "false"),
	} {
		if err := rt.handle(t.Context(), eventMsg(t, 0, int64(i), ev)); err != nil {
			t.Fatal(err)
		}
	}
	if err := flushAll(t.Context(), rt); err != nil {
		t.Fatal(err)
	}
	got := alerts(t, s, alertstore.AlertFilter{})
	if len(got) != 2 {
		t.Fatalf("%d alerts, want 2 (the breaker opening, the upstream turning unhealthy)", len(got))
	}
	if evs, _ := s.SearchEvents(t.Context(), alertstore.EventQuery{Service: "gateway", To: t0.Add(time.Hour)}); len(evs) != 6 {
		t.Fatalf("stored %d events, want all 6", len(evs))
	}
}
