package notify_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

var t0 = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)

// fakeNow is a wall clock the test moves.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time          { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) Advance(d time.Duration) { f.mu.Lock(); f.t = f.t.Add(d); f.mu.Unlock() }

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newStore(t *testing.T) alertstore.Store {
	s, err := pebblestore.OpenAlerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func storeAlert(t *testing.T, s alertstore.Store, id string, receivers ...string) {
	t.Helper()
	a := alertstore.Alert{ID: id, Key: "k-" + id, Kind: alertstore.KindEvent, Level: alertstore.LevelAlarm,
		State: alertstore.StateFiring, Service: "pay", Summary: "pay: charge failed", Count: 1, StartsAt: t0,
		Signature: "abc", TraceIDs: []string{"4bf92f3577b34da6a3ce929d0e0e4736"}}
	for i, r := range receivers {
		a.Outbox = append(a.Outbox, alertstore.Notice{ID: id + "-" + r + "-" + string(rune('0'+i)), Receiver: r, Event: notify.Fired, NextAt: t0})
	}
	if _, err := s.CreateAlert(t.Context(), a); err != nil {
		t.Fatal(err)
	}
}

// hook is a webhook receiver whose replies the test scripts.
type hook struct {
	mu     sync.Mutex
	codes  []int // replies in order; 200 once they run out
	bodies []notify.WebhookBody
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b notify.WebhookBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	code := 200
	if len(h.codes) > 0 {
		code, h.codes = h.codes[0], h.codes[1:]
	}
	if code == 200 {
		h.bodies = append(h.bodies, b)
	}
	w.WriteHeader(code)
}

func (h *hook) received() []notify.WebhookBody {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]notify.WebhookBody(nil), h.bodies...)
}

func newDispatcher(t *testing.T, s alertstore.Store, now *fakeNow, rcv map[string]notify.Receiver) *notify.Dispatcher {
	d, err := notify.NewDispatcher(notify.DispatcherConfig{Store: s, Receivers: rcv, Now: now.Now,
		LinkBase: "http://query:8080", BackoffMin: time.Second, BackoffMax: 4 * time.Second, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestWebhookDeliveredOnceWithLinks(t *testing.T) {
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	s := newStore(t)
	storeAlert(t, s, "a1", "hook")
	now := &fakeNow{t: t0}
	d := newDispatcher(t, s, now, map[string]notify.Receiver{"hook": &notify.Webhook{URL: srv.URL}})
	if n, err := d.DeliverDue(t.Context()); n != 1 || err != nil {
		t.Fatalf("delivered %d, %v", n, err)
	}
	if n, _ := d.DeliverDue(t.Context()); n != 0 {
		t.Fatalf("a delivered notice was sent again (%d)", n)
	}
	got := h.received()
	if len(got) != 1 || got[0].Event != notify.Fired || got[0].Alert.ID != "a1" || got[0].Alert.Outbox != nil ||
		got[0].Links.Alert != "http://query:8080/api/v1/alerts/a1" || got[0].Links.Events != "http://query:8080/api/v1/events?signature=abc" ||
		len(got[0].Links.Traces) != 1 {
		t.Fatalf("webhook got %+v", got)
	}
	a, _ := s.GetAlert(t.Context(), "a1")
	if len(a.Outbox) != 0 || len(a.History) != 1 || a.History[0].What != "notified" || a.History[0].By != "hook" {
		t.Fatalf("alert after delivery: outbox %v history %+v", a.Outbox, a.History)
	}
}

func TestRetriesWithBackoffThenGivesUp(t *testing.T) {
	h := &hook{codes: []int{503, 429}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	s := newStore(t)
	storeAlert(t, s, "a1", "hook")
	now := &fakeNow{t: t0}
	d := newDispatcher(t, s, now, map[string]notify.Receiver{"hook": &notify.Webhook{URL: srv.URL}})
	steps := []struct {
		advance time.Duration
		want    int
	}{{0, 0}, {500 * time.Millisecond, 0}, {500 * time.Millisecond, 0}, {time.Second, 0}, {time.Second, 1}}
	// attempt 1 at 0 fails (503): next at +1 s; attempt 2 at +1 s fails (429): next at +2 s
	// later (+3 s); nothing is due between; attempt 3 at +3 s succeeds.
	for i, st := range steps {
		now.Advance(st.advance)
		n, _ := d.DeliverDue(t.Context())
		if n != st.want {
			t.Fatalf("step %d (+%v): delivered %d, want %d", i, now.Now().Sub(t0), n, st.want)
		}
	}
	if len(h.received()) != 1 {
		t.Fatalf("received %d", len(h.received()))
	}

	// A receiver that keeps failing is given up after MaxAttempts; one that refuses (4xx) at once.
	h2 := &hook{codes: []int{500, 500, 500, 500}}
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	h3 := &hook{codes: []int{400}}
	srv3 := httptest.NewServer(h3)
	defer srv3.Close()
	storeAlert(t, s, "a2", "down", "refuses", "nobody")
	d = newDispatcher(t, s, now, map[string]notify.Receiver{"down": &notify.Webhook{URL: srv2.URL}, "refuses": &notify.Webhook{URL: srv3.URL}})
	for range 10 {
		d.DeliverDue(t.Context())
		now.Advance(5 * time.Second)
	}
	a, _ := s.GetAlert(t.Context(), "a2")
	if len(a.Outbox) != 0 {
		t.Fatalf("outbox still holds %+v", a.Outbox)
	}
	failed := map[string]string{}
	for _, c := range a.History {
		if c.What == "notify failed" {
			failed[c.By] = c.Note
		}
	}
	if !strings.Contains(failed["down"], "3 attempt") || !strings.Contains(failed["refuses"], "1 attempt") || !strings.Contains(failed["nobody"], "unknown receiver") {
		t.Fatalf("failure history: %v", failed)
	}
}

// slowReceiver blocks until released, counting calls.
type slowReceiver struct {
	calls   atomic.Int32
	release chan struct{}
}

func (r *slowReceiver) Notify(ctx context.Context, _ notify.Notification) error {
	r.calls.Add(1)
	select {
	case <-r.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestTwoDispatchersDeliverOnce(t *testing.T) {
	s := newStore(t)
	storeAlert(t, s, "a1", "r")
	now := &fakeNow{t: t0}
	r := &slowReceiver{release: make(chan struct{})}
	d1 := newDispatcher(t, s, now, map[string]notify.Receiver{"r": r})
	d2 := newDispatcher(t, s, now, map[string]notify.Receiver{"r": r})
	done := make(chan int)
	go func() { n, _ := d1.DeliverDue(t.Context()); done <- n }()
	for r.calls.Load() == 0 {
		time.Sleep(time.Millisecond) // wait for d1's claim to be made (no timer involved)
	}
	if n, _ := d2.DeliverDue(t.Context()); n != 0 || r.calls.Load() != 1 {
		t.Fatalf("second dispatcher delivered %d while the first held the claim (%d calls)", n, r.calls.Load())
	}
	close(r.release)
	if n := <-done; n != 1 {
		t.Fatalf("first dispatcher delivered %d", n)
	}
}

func TestClaimOfACrashedDispatcherExpires(t *testing.T) {
	s := newStore(t)
	storeAlert(t, s, "a1", "r")
	now := &fakeNow{t: t0}
	r := &slowReceiver{release: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	d1 := newDispatcher(t, s, now, map[string]notify.Receiver{"r": r})
	done := make(chan struct{})
	go func() { d1.DeliverDue(ctx); close(done) }()
	for r.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel() // the first dispatcher dies mid-delivery
	<-done
	close(r.release)
	d2 := newDispatcher(t, s, now, map[string]notify.Receiver{"r": r})
	if n, _ := d2.DeliverDue(t.Context()); n != 0 {
		t.Fatal("a claimed notice was taken before its lease ran out")
	}
	now.Advance(time.Minute)
	if n, _ := d2.DeliverDue(t.Context()); n != 1 {
		t.Fatalf("after the lease: delivered %d, want 1", n)
	}
}

// smtpServer is a minimal SMTP server on loopback that keeps the messages it accepts.
type smtpServer struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
	rcpt []string
}

func startSMTP(t *testing.T) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(line string) { io.WriteString(c, line+"\r\n") }
	say("220 test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250 test")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			say("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			s.mu.Lock()
			s.rcpt = append(s.rcpt, strings.TrimSpace(line[len("RCPT TO:"):]))
			s.mu.Unlock()
			say("250 ok")
		case cmd == "DATA":
			say("354 go ahead")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, b.String())
			s.mu.Unlock()
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

func TestEmailThroughSMTP(t *testing.T) {
	srv := startSMTP(t)
	rcv, err := notify.Build([]notify.Config{{Name: "mail", Type: notify.TypeEmail, SMTP: srv.ln.Addr().String(),
		From: "mercury@example.com", To: []string{"oncall@example.com", "lead@example.com"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	storeAlert(t, s, "a1", "mail")
	d := newDispatcher(t, s, &fakeNow{t: t0}, rcv)
	if n, err := d.DeliverDue(t.Context()); n != 1 || err != nil {
		t.Fatalf("delivered %d, %v", n, err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.msgs) != 1 || len(srv.rcpt) != 2 {
		t.Fatalf("smtp got %d messages for %v", len(srv.msgs), srv.rcpt)
	}
	m := srv.msgs[0]
	for _, want := range []string{"Subject: [ALARM fired] pay: charge failed", "To: oncall@example.com, lead@example.com",
		"alert:  http://query:8080/api/v1/alerts/a1", "trace:  http://query:8080/api/v1/traces/4bf92f3577b34da6a3ce929d0e0e4736"} {
		if !strings.Contains(m, want) {
			t.Errorf("mail lacks %q:\n%s", want, m)
		}
	}
}

func TestEmailToADeadServerIsRetryable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	e := &notify.Email{Addr: addr, From: "a@b", To: []string{"c@d"}}
	err := e.Notify(t.Context(), notify.Notification{Event: notify.Fired})
	if err == nil || retry.IsPermanent(err) {
		t.Fatalf("dead SMTP server: %v, want a retryable error", err)
	}
}

func TestBuildRejectsBadConfig(t *testing.T) {
	for name, c := range map[string]notify.Config{
		"no name":    {Type: notify.TypeLog},
		"bad type":   {Name: "x", Type: "pager"},
		"bad url":    {Name: "x", Type: notify.TypeWebhook, URL: "ftp://x"},
		"no smtp":    {Name: "x", Type: notify.TypeEmail, From: "a", To: []string{"b"}},
		"no to":      {Name: "x", Type: notify.TypeEmail, SMTP: "h:25", From: "a"},
		"am no host": {Name: "x", Type: notify.TypeAlertmanager, URL: "http://"},
	} {
		if _, err := notify.Build([]notify.Config{c}, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := notify.Build([]notify.Config{{Name: "a", Type: notify.TypeLog}, {Name: "a", Type: notify.TypeLog}}, nil); err == nil {
		t.Error("duplicate names accepted")
	}
}

func TestPermanentIsDetectedThroughWrapping(t *testing.T) {
	err := errors.Join(errors.New("x"), retry.Permanent(errors.New("refused")))
	if !retry.IsPermanent(err) {
		t.Fatal("wrapped permanent error not detected")
	}
}

// amRecorder is a fake Alertmanager that keeps the alerts posted to it.
type amRecorder struct {
	mu    sync.Mutex
	posts []notify.AMAlert
}

func (r *amRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var as []notify.AMAlert
	if req.URL.Path != "/api/v2/alerts" || json.NewDecoder(req.Body).Decode(&as) != nil {
		http.Error(w, "bad", 400)
		return
	}
	r.mu.Lock()
	r.posts = append(r.posts, as...)
	r.mu.Unlock()
}

func (r *amRecorder) last() notify.AMAlert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts[len(r.posts)-1]
}

// A metric alert has no known end: Alertmanager is told it ends Hold ahead, and told again
// every refresh while it fires, so an alerter that dies does not leave it firing forever.
func TestAlertmanagerHoldAndRefresh(t *testing.T) {
	rec := &amRecorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	s := newStore(t)
	now := &fakeNow{t: t0}
	am := &notify.Alertmanager{URL: srv.URL, Now: now.Now}
	d := newDispatcher(t, s, now, map[string]notify.Receiver{"am": am, "hook": notify.Log{Logger: quietLog()}})
	metric := alertstore.Alert{ID: "m1", Key: "metric/x", Kind: alertstore.KindMetric, Rule: "r", Level: alertstore.LevelWarning,
		State: alertstore.StateFiring, StartsAt: t0, Outbox: []alertstore.Notice{{ID: "n1", Receiver: "am", Event: notify.Fired, NextAt: t0}}}
	event := alertstore.Alert{ID: "e1", Key: "event/x", Kind: alertstore.KindEvent, Level: alertstore.LevelWarning,
		State: alertstore.StateFiring, StartsAt: t0, EndsAt: t0.Add(10 * time.Second),
		Outbox: []alertstore.Notice{{ID: "n2", Receiver: "am", Event: notify.Fired, NextAt: t0}}}
	for _, a := range []alertstore.Alert{metric, event} {
		if _, err := s.CreateAlert(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := d.DeliverDue(t.Context()); n != 2 || err != nil {
		t.Fatalf("delivered %d %v", n, err)
	}
	now.Advance(time.Minute)
	if n, err := d.Refresh(t.Context()); n != 1 || err != nil {
		t.Fatalf("refreshed %d %v, want only the metric alert", n, err)
	}
	if p := rec.last(); p.Labels["mercury_key"] != "metric/x" || !p.EndsAt.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("refresh posted %+v, want endsAt +5m", p)
	}
	if _, err := s.UpdateAlert(t.Context(), "m1", func(a *alertstore.Alert) error { a.State = alertstore.StateResolved; return nil }); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.Refresh(t.Context()); n != 0 {
		t.Fatalf("a resolved alert was refreshed")
	}
}
