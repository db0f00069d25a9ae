package alerter

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/alerter/rules"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

var minute0 = t0.Unix() // 08:00 UTC

func ptr(v float64) *float64 { return &v }

// metricBench is an alerter fed points by hand, with a history holding "stored" past data.
type metricBench struct {
	t       *testing.T
	s       alertstore.Store
	a       *Alerter
	mc      *metricConsumer
	history *rules.MemoryHistory
	now     *wall
	offset  int64
}

func newMetricBench(t *testing.T, rs []alertstore.Rule, sts []alertstore.Strategy, sils ...alertstore.Silence) *metricBench {
	s := openStore(t)
	ctx := t.Context()
	for _, r := range rs {
		if _, err := s.PutRule(ctx, r, 0, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range sts {
		if _, err := s.PutStrategy(ctx, st, 0, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for _, sil := range sils {
		if _, err := s.PutSilence(ctx, sil); err != nil {
			t.Fatal(err)
		}
	}
	_, url := newWebhook(t)
	now := &wall{t: t0}
	h := rules.NewMemoryHistory(8 * 24 * time.Hour)
	a, err := New(Config{Telemetry: daemon.Telemetry{Logger: quiet()}, Bus: bus.Config{Brokers: []string{"127.0.0.1:1"}},
		Store: s, NoPublish: true, Now: now.Now, History: h,
		Receivers: []notify.Config{{Name: "warn", Type: notify.TypeWebhook, URL: url}, {Name: "page", Type: notify.TypeWebhook, URL: url}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.reloadRules(ctx); err != nil {
		t.Fatal(err)
	}
	return &metricBench{t: t, s: s, a: a, mc: &metricConsumer{a: a}, history: h, now: now}
}

// point is a minute of the payment series: calls, errors, revision.
func point(minute int64, count, errs float64, rev int32) schemas.MetricPoint {
	return schemas.MetricPoint{SeriesID: "shop|payment|POST /pay|SERVER", Domain: "shop", Service: "payment",
		Operation: "POST /pay", Kind: schemas.KindServer, MinuteUnix: minute0 + 60*minute, Count: count, Errors: errs,
		SumNano: count * 20e6, Revision: rev}
}

// feed delivers p as the aggregator would (stored in the metric store, then on the topic),
// with the clock at the end of its minute.
func (b *metricBench) feed(p schemas.MetricPoint) {
	b.t.Helper()
	b.history.Put(p)
	b.now.Set(time.Unix(p.MinuteUnix+60, 0))
	v, err := schemas.Marshal(&p)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := b.mc.handle(b.t.Context(), kafka.Message{Topic: bus.TopicMetrics1m, Offset: b.offset, Value: v}); err != nil {
		b.t.Fatal(err)
	}
	b.offset++
}

func (b *metricBench) alerts() []alertstore.Alert {
	return alerts(b.t, b.s, alertstore.AlertFilter{Kind: alertstore.KindMetric})
}

// notices lists event/receiver of every notice an alert's outbox holds.
func notices(a alertstore.Alert) []string {
	var out []string
	for _, n := range a.Outbox {
		out = append(out, n.Event+"/"+n.Receiver)
	}
	return out
}

var errorRate = alertstore.Rule{Name: "error-rate", Kind: alertstore.RuleMetric, For: 3,
	Conditions: []alertstore.Condition{{Metric: "error_rate", Op: ">", Warning: ptr(0.1), Alarm: ptr(0.3), MinCount: 10}}}

var payments = alertstore.Strategy{Name: "payments", Rules: []string{"error-rate"},
	Selectors: []alertstore.Selector{{Service: "payment"}},
	Receivers: map[string][]string{alertstore.LevelWarning: {"warn"}, alertstore.LevelAlarm: {"warn", "page"}}}

func TestRuleConsecutiveEscalateResolve(t *testing.T) {
	b := newMetricBench(t, []alertstore.Rule{errorRate}, []alertstore.Strategy{payments,
		{Name: "elsewhere", Rules: []string{"error-rate"}, Selectors: []alertstore.Selector{{Service: "order"}}}})
	// 20 % errors for two minutes, a clean minute, then three more: the clean minute
	// restarts the count, so only minute 5 completes three in a row.
	for m, errs := range []float64{20, 20, 0, 20, 20} {
		b.feed(point(int64(m), 100, errs, 1))
		if n := len(b.alerts()); n != 0 {
			t.Fatalf("minute %d: %d alerts before three breaching minutes in a row", m, n)
		}
	}
	b.feed(point(5, 100, 20, 1))
	got := b.alerts()
	if len(got) != 1 {
		t.Fatalf("after minutes 3-5 at 20 %%: %d alerts, want 1", len(got))
	}
	al := got[0]
	if al.Level != alertstore.LevelWarning || al.Strategy != "payments" || al.Rule != "error-rate" ||
		!al.StartsAt.Equal(time.Unix(minute0+180, 0).UTC()) || al.Value != 0.2 || al.Threshold != 0.1 {
		t.Fatalf("fired: %+v", al)
	}
	if n := notices(al); len(n) != 1 || n[0] != "fired/warn" {
		t.Fatalf("warning notices %v, want fired/warn", n)
	}
	if _, err := b.a.dispatcher.DeliverDue(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Three minutes at 50 %: the alarm level holds once all three are above 30 %.
	b.feed(point(6, 100, 50, 1))
	b.feed(point(7, 100, 50, 1))
	if got := b.alerts(); got[0].Level != alertstore.LevelWarning {
		t.Fatalf("alarm before three minutes above its threshold")
	}
	b.feed(point(8, 100, 50, 1))
	got = b.alerts()
	if len(got) != 1 || got[0].Level != alertstore.LevelAlarm || got[0].ID != al.ID {
		t.Fatalf("escalation: %+v", got)
	}
	if n := notices(got[0]); len(n) != 2 || n[0] != "escalated/warn" || n[1] != "escalated/page" {
		t.Fatalf("escalation notices %v, want the alarm's receivers", n)
	}
	b.a.dispatcher.DeliverDue(t.Context())

	// Clear: resolved with a recovery notice to those who heard the alarm.
	b.feed(point(9, 100, 1, 1))
	got = b.alerts()
	if len(got) != 1 || got[0].State != alertstore.StateResolved || got[0].ResolvedAt.IsZero() {
		t.Fatalf("recovery: %+v", got)
	}
	if n := notices(got[0]); len(n) != 2 || n[0] != "resolved/warn" || n[1] != "resolved/page" {
		t.Fatalf("recovery notices %v", n)
	}
	var what []string
	for _, c := range got[0].History {
		what = append(what, c.What)
	}
	if len(what) < 3 || what[0] != "fired" {
		t.Fatalf("history %v", what)
	}
}

func TestRuleLateRevisionsDoNotDoubleFire(t *testing.T) {
	b := newMetricBench(t, []alertstore.Rule{errorRate}, []alertstore.Strategy{payments})
	b.feed(point(0, 100, 20, 1))
	b.feed(point(1, 100, 20, 1))
	b.feed(point(2, 100, 5, 1)) // first revision of minute 2: clean
	if n := len(b.alerts()); n != 0 {
		t.Fatalf("%d alerts, want none yet", n)
	}
	// Late partials raise minute 2's errors: the re-evaluation completes three in a row.
	b.feed(point(2, 120, 30, 2))
	if got := b.alerts(); len(got) != 1 || got[0].State != alertstore.StateFiring {
		t.Fatalf("after the revision: %+v", got)
	}
	b.a.dispatcher.DeliverDue(t.Context())
	// More revisions of breaching minutes, and a newer minute still breaching: nothing new.
	b.feed(point(1, 130, 26, 2))
	b.feed(point(2, 140, 35, 3))
	b.feed(point(3, 100, 20, 1))
	got := b.alerts()
	if len(got) != 1 || len(got[0].Outbox) != 0 {
		t.Fatalf("revisions of a firing alert's minutes: %d alerts, outbox %v", len(got), notices(got[0]))
	}
	// A revision of a minute older than any window ending now changes nothing either.
	b.feed(point(0, 100, 0, 2))
	if got := b.alerts(); got[0].State != alertstore.StateFiring {
		t.Fatal("a revision outside the window resolved the alert")
	}
	// A revision of the newest minute that clears it resolves.
	b.feed(point(3, 200, 2, 2))
	if got := b.alerts(); got[0].State != alertstore.StateResolved {
		t.Fatalf("the clearing revision: %+v", got[0])
	}
}

func TestRuleBaselineAgainstStoredYesterday(t *testing.T) {
	vsYesterday := alertstore.Rule{Name: "errors-vs-yesterday", Kind: alertstore.RuleMetric, For: 5,
		Conditions: []alertstore.Condition{{Metric: "error_rate", Op: ">", Baseline: alertstore.BaselineYesterday, Warning: ptr(3)}}}
	b := newMetricBench(t, []alertstore.Rule{vsYesterday}, []alertstore.Strategy{{Name: "payments", Rules: []string{"errors-vs-yesterday"}}})
	day := int64(24 * 60)
	for m := range int64(10) { // yesterday: 2 % errors, as the metric store holds it
		b.history.Put(point(m-day, 100, 2, 1))
	}
	// Today: 5 % (2.5×) for three minutes, then 8 % (4×) for five.
	for m := range int64(8) {
		errs := 5.0
		if m >= 3 {
			errs = 8
		}
		b.feed(point(m, 100, errs, 1))
		if n := len(b.alerts()); (m < 7 && n != 0) || (m == 7 && n != 1) {
			t.Fatalf("minute %d: %d alerts", m, n)
		}
	}
	al := b.alerts()[0]
	if al.Value != 4 || al.Threshold != 3 {
		t.Fatalf("baseline alert: value %v threshold %v", al.Value, al.Threshold)
	}
	// Default receivers (the strategy names none): log.
	if n := notices(al); len(n) != 1 || n[0] != "fired/log" {
		t.Fatalf("notices %v, want fired/log", n)
	}
}

func TestRuleGroupAllMustHold(t *testing.T) {
	busyFailing := alertstore.Rule{Name: "busy-and-failing", Kind: alertstore.RuleMetric, Conditions: []alertstore.Condition{
		{Metric: "qps", Op: ">=", Warning: ptr(5)},
		{Metric: "error_rate", Op: ">", Warning: ptr(0.1)},
	}}
	b := newMetricBench(t, []alertstore.Rule{busyFailing}, []alertstore.Strategy{{Name: "payments", Rules: []string{"busy-and-failing"}}})
	b.feed(point(0, 60, 30, 1))   // 1 qps, 50 % errors
	b.feed(point(1, 600, 6, 1))   // 10 qps, 1 %
	b.feed(point(2, 600, 120, 1)) // 10 qps, 20 %: both
	got := b.alerts()
	if len(got) != 1 || !got[0].StartsAt.Equal(time.Unix(minute0+120, 0).UTC()) {
		t.Fatalf("group: %+v", got)
	}
}

func TestRuleSilenced(t *testing.T) {
	sil := alertstore.Silence{Matchers: []alertstore.Matcher{{Name: "alertname", Value: "error-.*", Regex: true}, {Name: "service", Value: "payment"}},
		StartsAt: t0, EndsAt: t0.Add(time.Hour), CreatedBy: "ops", Comment: "deploy"}
	b := newMetricBench(t, []alertstore.Rule{errorRate}, []alertstore.Strategy{payments}, sil)
	for m := range int64(3) {
		b.feed(point(m, 100, 20, 1))
	}
	got := b.alerts()
	if len(got) != 1 || got[0].SilencedBy == "" || len(got[0].Outbox) != 0 {
		t.Fatalf("silenced alert: %+v", got)
	}
	// Past the silence's end, the next alert notifies again.
	b.feed(point(3, 100, 0, 1)) // resolves; a silenced alert's recovery is silenced too
	b.now.Set(t0.Add(2 * time.Hour))
	for m := int64(120); m < 123; m++ {
		b.feed(point(m, 100, 20, 1))
	}
	firing := alerts(t, b.s, alertstore.AlertFilter{State: alertstore.StateFiring})
	if len(firing) != 1 || firing[0].SilencedBy != "" || len(notices(firing[0])) != 1 {
		t.Fatalf("after the silence: %+v", firing)
	}
}

// A series whose points stop is evaluated on as a series without calls once its minutes
// are overdue: "qps below" fires, an error-rate alert resolves.
func TestRuleSilentSeries(t *testing.T) {
	silent := alertstore.Rule{Name: "silent", Kind: alertstore.RuleMetric, For: 2,
		Conditions: []alertstore.Condition{{Metric: "qps", Op: "<", Warning: ptr(0.5)}}}
	st := payments
	st.Rules = []string{"error-rate", "silent"}
	b := newMetricBench(t, []alertstore.Rule{errorRate, silent}, []alertstore.Strategy{st})
	for m := range int64(3) {
		b.feed(point(m, 100, 20, 1))
	}
	if got := b.alerts(); len(got) != 1 || got[0].Rule != "error-rate" {
		t.Fatalf("before the silence: %+v", got)
	}
	// Minute 3's point is due 2 min after it ends (08:06): nothing happens before.
	b.now.Set(time.Unix(minute0+6*60-1, 0))
	if err := b.mc.tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := b.alerts(); len(got) != 1 || got[0].State != alertstore.StateFiring {
		t.Fatalf("a minute not yet overdue was evaluated: %+v", got)
	}
	// At 08:08 minutes 3-5 are overdue: the error rate is gone with the calls, and the
	// service has been silent for two minutes by minute 4.
	b.now.Set(time.Unix(minute0+8*60, 0))
	if err := b.mc.tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	byRule := map[string]alertstore.Alert{}
	for _, al := range b.alerts() {
		byRule[al.Rule] = al
	}
	if er := byRule["error-rate"]; er.State != alertstore.StateResolved {
		t.Fatalf("error-rate after the calls stopped: %s", er.State)
	}
	sl := byRule["silent"]
	if sl.State != alertstore.StateFiring || !sl.StartsAt.Equal(time.Unix(minute0+3*60, 0).UTC()) {
		t.Fatalf("silent: %+v", sl)
	}
	// A point again: the silence is over.
	b.feed(point(6, 100, 0, 1))
	for _, al := range b.alerts() {
		if al.Rule == "silent" && al.State != alertstore.StateResolved {
			t.Fatalf("silent after calls came back: %s", al.State)
		}
	}
}
