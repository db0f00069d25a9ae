package alerter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

func heartbeatMsg(t *testing.T, partition int, hb schemas.Heartbeat) kafka.Message {
	t.Helper()
	v, err := schemas.Marshal(&hb)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: bus.TopicHeartbeats, Partition: partition, Key: []byte(hb.Service), Value: v}
}

func selfAlert(t *testing.T, s alertstore.Store, key string) (alertstore.Alert, bool) {
	t.Helper()
	als := alerts(t, s, alertstore.AlertFilter{Kind: alertstore.KindSelf})
	for _, a := range als {
		if a.Key == key {
			return a, true
		}
	}
	return alertstore.Alert{}, false
}

func TestSelfAlertsFromHeartbeats(t *testing.T) {
	s := openStore(t)
	now := &wall{t: t0}
	_, url := newWebhook(t)
	a := newTestAlerter(t, s, now, url)
	w := newSelfWatch(a)
	ctx := t.Context()
	if err := w.assigned(ctx, []bus.Assignment{{Partition: 1}}); err != nil {
		t.Fatal(err)
	}
	beat := func(at time.Duration, stats map[string]int64) {
		t.Helper()
		now.Set(t0.Add(at))
		hb := schemas.Heartbeat{TimeUnixNano: t0.Add(at).UnixNano(), Domain: "shop", Service: "payment", Host: "pay-1", PID: 42,
			AgentVersion: "1.0", Stats: stats}
		if err := w.handle(ctx, heartbeatMsg(t, 1, hb)); err != nil {
			t.Fatal(err)
		}
	}
	beat(0, map[string]int64{"dropped_queue_full": 3, "spool_bytes": 1 << 20})
	if als := alerts(t, s, alertstore.AlertFilter{}); len(als) != 0 {
		t.Fatalf("first heartbeat raised %d alerts: drops before it are not news", len(als))
	}
	beat(10*time.Second, map[string]int64{"dropped_queue_full": 10, "shipper_lag_bytes": 100 << 20})
	drops, ok := selfAlert(t, s, "self/agent_drops/payment/pay-1")
	if !ok || drops.State != alertstore.StateFiring || drops.Value != 7 || len(drops.Outbox) != 1 {
		t.Fatalf("agent drops: %+v", drops)
	}
	lag, ok := selfAlert(t, s, "self/shipper_lag/payment/pay-1")
	if !ok || lag.State != alertstore.StateFiring || lag.Value != 100<<20 {
		t.Fatalf("shipper lag: %+v", lag)
	}
	beat(20*time.Second, map[string]int64{"dropped_queue_full": 10, "shipper_lag_bytes": 0})
	d, _ := selfAlert(t, s, "self/agent_drops/payment/pay-1")
	if d.State != alertstore.StateResolved {
		t.Fatalf("drops stopped but the alert is %s", d.State)
	}
	// Resolved, it still says what it fired about; what resolved it is in the history.
	if d.Value != 7 || !strings.Contains(d.Summary, "dropped 7 record") || !strings.Contains(d.History[len(d.History)-1].Note, "dropped 0 record") {
		t.Fatalf("resolved drops alert: value %v, summary %q, history %+v", d.Value, d.Summary, d.History)
	}
	if l, _ := selfAlert(t, s, "self/shipper_lag/payment/pay-1"); l.State != alertstore.StateResolved {
		t.Fatalf("shipper caught up but the alert is %s", l.State)
	}

	// No heartbeat for a minute: the service stopped reporting; its next heartbeat clears it.
	now.Set(t0.Add(75 * time.Second))
	if err := w.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := selfAlert(t, s, "self/stopped/payment"); ok {
		t.Fatal("stopped reporting raised before StoppedAfter passed")
	}
	now.Set(t0.Add(81 * time.Second))
	if err := w.tick(ctx); err != nil {
		t.Fatal(err)
	}
	stopped, ok := selfAlert(t, s, "self/stopped/payment")
	if !ok || stopped.State != alertstore.StateFiring || stopped.Level != alertstore.LevelAlarm {
		t.Fatalf("stopped reporting: %+v", stopped)
	}
	if err := w.tick(ctx); err != nil { // ticking on changes nothing
		t.Fatal(err)
	}
	if als := alerts(t, s, alertstore.AlertFilter{State: alertstore.StateFiring}); len(als) != 1 {
		t.Fatalf("firing: %d, want 1", len(als))
	}
	beat(90*time.Second, map[string]int64{"dropped_queue_full": 10})
	if st, _ := selfAlert(t, s, "self/stopped/payment"); st.State != alertstore.StateResolved {
		t.Fatalf("service reports again but the alert is %s", st.State)
	}

	// Once the partition is revoked, its services are another instance's to watch.
	w.revoked([]int{1})
	now.Set(t0.Add(time.Hour))
	if err := w.tick(ctx); err != nil {
		t.Fatal(err)
	}
	if als := alerts(t, s, alertstore.AlertFilter{State: alertstore.StateFiring}); len(als) != 0 {
		t.Fatalf("a revoked partition's service raised %d alerts", len(als))
	}
}

func TestConsumerLagSelfAlert(t *testing.T) {
	bc := startBroker(t)
	w, err := bus.NewWriter(bc, bus.WriterConfig{Topic: bus.TopicSpans, BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	msgs := make([]kafka.Message, 50)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte{byte(i)}, Value: []byte("x")}
	}
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	if _, err := ConsumerLag(t.Context(), bc, "collector", bus.TopicSpans); err != errNoGroup {
		t.Fatalf("lag of a group that never ran: %v, want errNoGroup", err)
	}
	// The "collector" group reads and commits 10 messages, then stops.
	r, err := bus.NewReader(bc, bus.ReaderConfig{Topic: bus.TopicSpans, GroupID: "collector"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for range 10 {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	// Partitions the group committed in lag by what follows the commit, the others by all
	// they hold: 50 − 10 in all.
	lag, err := ConsumerLag(t.Context(), bc, "collector", bus.TopicSpans)
	if err != nil || lag != 40 {
		t.Fatalf("lag %d, %v; want 40", lag, err)
	}

	s := openStore(t)
	now := &wall{t: time.Now()}
	a, err := New(Config{Telemetry: daemon.Telemetry{Logger: quiet()}, Bus: bc, Store: s, NoPublish: true,
		Now: now.Now, MaxLag: 5, LagGroups: map[string]string{"collector": bus.TopicSpans, "absent": bus.TopicSpans}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.reloadRules(t.Context()); err != nil {
		t.Fatal(err)
	}
	sw := newSelfWatch(a)
	sw.assigned(t.Context(), []bus.Assignment{{Partition: 0}})
	if err := sw.tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	al, ok := selfAlert(t, s, "self/consumer_lag/collector")
	if !ok || al.State != alertstore.StateFiring || al.Value != float64(lag) || al.Labels["topic"] != bus.TopicSpans {
		t.Fatalf("consumer lag alert: %+v", al)
	}
	if _, ok := selfAlert(t, s, "self/consumer_lag/absent"); ok {
		t.Fatal("a group that never ran raised a lag alert")
	}
}
