package alerter

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/internal/testproc"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

func startBroker(t testing.TB) bus.Config {
	t.Helper()
	b, err := broker.New(context.Background(), broker.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	cfg := bus.Config{Brokers: []string{b.Addr()}}
	if err := bus.EnsureTopics(context.Background(), cfg, nil); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// running is an alerter started on the broker.
type running struct {
	a      *Alerter
	cancel context.CancelFunc
	ended  chan struct{} // closed when Run returned; err is its result
	err    error
}

// stop cancels the alerter and returns Run's result.
func (r *running) stop() error {
	r.cancel()
	<-r.ended
	return r.err
}

func startAlerter(t testing.TB, bc bus.Config, s alertstore.Store, hookURL string, tweak func(*Config)) *running {
	t.Helper()
	cfg := Config{Telemetry: daemon.Telemetry{Logger: quiet()}, Bus: bc, Store: s, Window: 2 * time.Second,
		Receivers:        []notify.Config{{Name: "hook", Type: notify.TypeWebhook, URL: hookURL}},
		DefaultReceivers: []string{"hook"}, ClaimLease: 2 * time.Second, LagGroups: map[string]string{}}
	if tweak != nil {
		tweak(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, ended: make(chan struct{})}
	go func() { r.err = a.Run(ctx); close(r.ended) }()
	t.Cleanup(func() { r.stop() })
	waitFor(t, 30*time.Second, "alerter ready", func() bool { return a.Ready() == nil })
	return r
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond) // polling a system running on real time (broker, consumer group)
	}
}

func newWriter(t testing.TB, bc bus.Config) *kafka.Writer {
	w, err := bus.NewWriter(bc, bus.WriterConfig{Topic: bus.TopicEvents, BatchTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.CloseWriter(w) })
	return w
}

func produce(t testing.TB, w *kafka.Writer, evs ...schemas.Event) {
	t.Helper()
	msgs := make([]kafka.Message, len(evs))
	for i := range evs {
		v, err := schemas.Marshal(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = kafka.Message{Key: []byte(evs[i].Service), Value: v}
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func breakerOpened(route string, at time.Time) schemas.Event {
	return schemas.Event{TimeUnixNano: at.UnixNano(), Domain: "shop", Service: "gateway", Host: "gw-1",
		Type: schemas.EventBreaker, Name: route, Operation: route, Message: "breaker_state from=closed to=open",
		Attributes: []schemas.KV{{Key: "route", Value: route}, {Key: "to", Value: "open"}}}
}

// A gateway breaker opening reaches a webhook receiver through the embedded broker, the
// alerter and its dispatcher, and mercury.alerts carries the alert too.
func TestBreakerEventReachesWebhook(t *testing.T) {
	bc := startBroker(t)
	hook, url := newWebhook(t)
	s := openStore(t)
	startAlerter(t, bc, s, url, nil)
	w := newWriter(t, bc)
	sent := time.Now()
	produce(t, w, breakerOpened("/pay", sent))
	select {
	case <-hook.got:
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook notification in 30 s")
	}
	b := hook.received()[0]
	if b.Event != notify.Fired || b.Alert.Service != "gateway" || b.Alert.Level != alertstore.LevelAlarm || b.Alert.Labels["name"] != "/pay" {
		t.Fatalf("webhook got %+v", b)
	}
	t.Logf("event → webhook: %v", hook.at[0].Sub(sent))

	r, err := bus.NewReader(bc, bus.ReaderConfig{Topic: bus.TopicAlerts, GroupID: "alerts-check"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m, err := r.FetchMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rec schemas.Alert
	if err := schemas.Unmarshal(m.Value, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.ID != b.Alert.ID || rec.State != alertstore.StateFiring || rec.Service != "gateway" {
		t.Fatalf("mercury.alerts carries %+v", rec)
	}
}

// BenchmarkBreakerToWebhook measures, per breaker event (each a new signature, so each
// alerts), the time from the event's timestamp to its arrival at a local webhook receiver,
// through the embedded broker. Reported: p50 and p99 in milliseconds.
func BenchmarkBreakerToWebhook(b *testing.B) {
	bc := startBroker(b)
	hook, url := newWebhook(b)
	s := openStore(b)
	startAlerter(b, bc, s, url, nil)
	w := newWriter(b, bc)
	// Warm up: the first event waits for the consumer group to settle.
	produce(b, w, breakerOpened("/warmup", time.Now()))
	<-hook.got
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		sent := time.Now()
		produce(b, w, breakerOpened(fmt.Sprintf("/route-%d", i), sent))
		select {
		case <-hook.got:
		case <-time.After(30 * time.Second):
			b.Fatal("no webhook notification in 30 s")
		}
		hook.mu.Lock()
		lat = append(lat, hook.at[len(hook.at)-1].Sub(sent))
		hook.mu.Unlock()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// Two alerter instances share a consumer group; one is killed mid-stream (its store writes
// stop, then its consumer leaves without committing the batch in hand). Every window of every
// signature alerts exactly once, with exactly its events counted.
func TestRebalanceKillLosesAndDuplicatesNothing(t *testing.T) {
	bc := startBroker(t)
	hook, url := newWebhook(t)
	shared := openStore(t)
	ka, kb := &killable{s: shared}, &killable{s: shared}
	a := startAlerter(t, bc, ka, url, nil)
	b := startAlerter(t, bc, kb, url, nil)
	w := newWriter(t, bc)
	waitFor(t, 60*time.Second, "both instances own events partitions", func() bool { return groupMembers(t, bc, "alerter") == 2 })

	const services, rounds, step = 12, 40, 250 * time.Millisecond // window 2 s: a new window every 8 rounds
	base := time.Now()
	event := func(svc, round int) schemas.Event {
		ev := exception(base.Add(time.Duration(round)*step), fmt.Sprintf("h%d", round%5), "*pay.Error", fmt.Sprintf("order %d failed", round))
		ev.Service = fmt.Sprintf("svc-%02d", svc)
		return ev
	}
	send := func(from, to int) {
		for r := from; r < to; r++ {
			evs := make([]schemas.Event, services)
			for s := range services {
				evs[s] = event(s, r)
			}
			produce(t, w, evs...)
		}
	}
	send(0, rounds/2)
	waitFor(t, 60*time.Second, "both instances consuming", func() bool {
		return counterValue(a.a.events) > 0 && counterValue(b.a.events) > 0
	})
	// The kill: from now on nothing of A reaches the store (its batch in hand fails, is
	// retried, fails), then A is stopped: its consumer abandons that batch uncommitted and
	// leaves the group.
	ka.kill()
	send(rounds/2, rounds/2+4)
	waitFor(t, 30*time.Second, "the killed instance failing", func() bool { return a.a.Ready() != nil })
	a.stop()
	send(rounds/2+4, rounds)

	// Oracle: the windows of one signature, from its events' times.
	type window struct {
		start time.Time
		count int64
	}
	var want []window
	for r := 0; r < rounds; r++ {
		at := base.Add(time.Duration(r) * step)
		if n := len(want); n > 0 && at.Before(want[n-1].start.Add(2*time.Second)) {
			want[n-1].count++
			continue
		}
		want = append(want, window{start: at, count: 1})
	}
	total := services * len(want)
	byKey := func() map[string][]alertstore.Alert {
		m := map[string][]alertstore.Alert{}
		for _, al := range alerts(t, shared, alertstore.AlertFilter{Kind: alertstore.KindEvent}) {
			m[al.Service] = append(m[al.Service], al)
		}
		return m
	}
	waitFor(t, 60*time.Second, "every window counted", func() bool {
		m := byKey()
		n := 0
		for _, als := range m {
			for _, al := range als {
				n += int(al.Count)
			}
		}
		return n == services*rounds
	})
	for svc, als := range byKey() {
		sort.Slice(als, func(i, j int) bool { return als[i].StartsAt.Before(als[j].StartsAt) })
		if len(als) != len(want) {
			t.Fatalf("%s: %d alerts, want %d", svc, len(als), len(want))
		}
		for i, al := range als {
			if !al.StartsAt.Equal(want[i].start.UTC()) || al.Count != want[i].count {
				t.Fatalf("%s window %d: start %v count %d, want %v %d", svc, i, al.StartsAt, al.Count, want[i].start.UTC(), want[i].count)
			}
		}
	}
	// Every alert reached the webhook; a notice the killed instance delivered but could not
	// mark delivered is sent again (at least once, with the alert id to deduplicate on).
	waitFor(t, 60*time.Second, "every alert notified", func() bool {
		ids := map[string]bool{}
		for _, body := range hook.received() {
			ids[body.Alert.ID] = true
		}
		return len(ids) == total
	})
	fired := map[string]int{}
	notices := map[string]map[string]bool{} // alert → notice ids it was delivered under
	hook.mu.Lock()
	for i, body := range hook.bodies {
		fired[body.Alert.ID]++
		if notices[body.Alert.ID] == nil {
			notices[body.Alert.ID] = map[string]bool{}
		}
		notices[body.Alert.ID][hook.notice[i]] = true
	}
	hook.mu.Unlock()
	again := 0
	for id, n := range fired {
		again += n - 1
		if len(notices[id]) != 1 {
			t.Fatalf("alert %s was notified under %d notice ids; a redelivery must carry the same one", id, len(notices[id]))
		}
	}
	t.Logf("%d alerts, %d events; %d notification(s) sent twice by the kill", total, services*rounds, again)
}

// groupMembers counts the members of group holding a partition of mercury.events in a
// stable group.
func groupMembers(t testing.TB, bc bus.Config, group string) int {
	cl, err := bc.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	resp, err := cl.DescribeGroups(t.Context(), &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil || len(resp.Groups) != 1 || resp.Groups[0].GroupState != "Stable" {
		return 0
	}
	n := 0
	for _, m := range resp.Groups[0].Members {
		for _, tp := range m.MemberAssignments.Topics {
			if tp.Topic == bus.TopicEvents && len(tp.Partitions) > 0 {
				n++
			}
		}
	}
	return n
}

func counterValue(c prometheus.Counter) float64 { return testutil.ToFloat64(c) }

// BenchmarkMetricPointToWebhook measures the alerter's share of "a metric rule fires after
// the minute that breached it": from producing a breaching one-minute point to
// mercury.metrics.1m to its notification at a local webhook (each iteration a new series, so
// each fires). The aggregator's own delay in emitting the minute comes on top.
func BenchmarkMetricPointToWebhook(b *testing.B) {
	bc := startBroker(b)
	hook, url := newWebhook(b)
	s := openStore(b)
	ctx := context.Background()
	if _, err := s.PutRule(ctx, alertstore.Rule{Name: "busy", Kind: alertstore.RuleMetric,
		Conditions: []alertstore.Condition{{Metric: "qps", Op: ">", Warning: ptr(1)}}}, 0, "bench"); err != nil {
		b.Fatal(err)
	}
	if _, err := s.PutStrategy(ctx, alertstore.Strategy{Name: "all", Rules: []string{"busy"}}, 0, "bench"); err != nil {
		b.Fatal(err)
	}
	startAlerter(b, bc, s, url, nil)
	w, err := bus.NewWriter(bc, bus.WriterConfig{Topic: bus.TopicMetrics1m, BatchTimeout: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer bus.CloseWriter(w)
	send := func(series string) time.Time {
		minute := time.Now().Truncate(time.Minute).Add(-time.Minute)
		p := schemas.MetricPoint{SeriesID: series, Service: series, Operation: "GET /", MinuteUnix: minute.Unix(), Count: 600, Revision: 1}
		v, err := schemas.Marshal(&p)
		if err != nil {
			b.Fatal(err)
		}
		sent := time.Now()
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(series), Value: v}); err != nil {
			b.Fatal(err)
		}
		return sent
	}
	send("warmup")
	<-hook.got
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		sent := send(fmt.Sprintf("svc-%d", i))
		select {
		case <-hook.got:
		case <-time.After(30 * time.Second):
			b.Fatal("no webhook notification in 30 s")
		}
		hook.mu.Lock()
		lat = append(lat, hook.at[len(hook.at)-1].Sub(sent))
		hook.mu.Unlock()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// The convergence of the issue through the broker: 1,000 identical exceptions (ids in their
// messages differ) from 200 hosts within 3 s reach the webhook as one alert, whose stored
// counts come to 1,000 from 200 hosts.
func TestThousandExceptionsThroughTheBrokerOneNotification(t *testing.T) {
	bc := startBroker(t)
	hook, url := newWebhook(t)
	s := openStore(t)
	startAlerter(t, bc, s, url, func(c *Config) { c.Window = time.Minute })
	w := newWriter(t, bc)
	base := time.Now()
	evs := make([]schemas.Event, 1000)
	for i := range evs {
		evs[i] = exception(base.Add(time.Duration(i)*3*time.Millisecond), fmt.Sprintf("pay-%03d", i%200), "*pay.DeclinedError",
			fmt.Sprintf("charge order %d failed", 500000+i))
	}
	for i := 0; i < len(evs); i += 100 {
		produce(t, w, evs[i:i+100]...)
	}
	waitFor(t, 30*time.Second, "1,000 events counted", func() bool {
		als := alerts(t, s, alertstore.AlertFilter{})
		return len(als) == 1 && als[0].Count == 1000
	})
	al := alerts(t, s, alertstore.AlertFilter{})[0]
	if al.HostCount != 200 || al.Suppressed != 999 {
		t.Fatalf("alert: %d hosts, %d suppressed", al.HostCount, al.Suppressed)
	}
	// Every notification comes from a stored alert's outbox: once the one alert's outbox is
	// empty, everything that will be sent has been.
	waitFor(t, 30*time.Second, "the outbox drained", func() bool {
		a, err := s.GetAlert(t.Context(), al.ID)
		return err == nil && len(a.Outbox) == 0
	})
	if n := len(hook.received()); n != 1 {
		t.Fatalf("webhook got %d notifications, want 1", n)
	}
}

// TestAlerterWaitsForTheBroker: started while the broker is down (both restarting after a
// crash), the alerter waits for it instead of exiting, and is ready once the broker is up.
func TestAlerterWaitsForTheBroker(t *testing.T) {
	addr := testproc.FreeAddr(t)
	_, url := newWebhook(t)
	up := make(chan *broker.Broker, 1)
	go func() {
		time.Sleep(time.Second) // the alerter starts first and finds nobody there
		b, err := broker.New(context.Background(), broker.Config{Addr: addr, Logger: quiet()})
		if err != nil {
			t.Error(err)
		}
		up <- b
	}()
	r := startAlerter(t, bus.Config{Brokers: []string{addr}}, openStore(t), url, nil)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if b := <-up; b != nil {
		b.Close()
	}
}
