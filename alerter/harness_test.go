package alerter

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

var t0 = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)

// wall is a wall clock the test moves.
type wall struct {
	mu sync.Mutex
	t  time.Time
}

func (w *wall) Now() time.Time          { w.mu.Lock(); defer w.mu.Unlock(); return w.t }
func (w *wall) Set(t time.Time)         { w.mu.Lock(); w.t = t; w.mu.Unlock() }
func (w *wall) Advance(d time.Duration) { w.mu.Lock(); w.t = w.t.Add(d); w.mu.Unlock() }

// webhook collects what the alerter's webhook receiver is sent.
type webhook struct {
	mu     sync.Mutex
	bodies []notify.WebhookBody
	notice []string // the X-Mercury-Notice header of each
	at     []time.Time
	got    chan struct{}
}

func newWebhook(t testing.TB) (*webhook, string) {
	h := &webhook{got: make(chan struct{}, 100000)}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b notify.WebhookBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.bodies = append(h.bodies, b)
	h.notice = append(h.notice, r.Header.Get(notify.NoticeHeader))
	h.at = append(h.at, time.Now())
	h.mu.Unlock()
	h.got <- struct{}{}
}

func (h *webhook) received() []notify.WebhookBody {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]notify.WebhookBody(nil), h.bodies...)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func openStore(t testing.TB) alertstore.Store {
	s, err := pebblestore.OpenAlerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newTestAlerter is an alerter with a webhook receiver "hook" as the default, no broker
// (the test feeds its handlers) and the clock now.
func newTestAlerter(t *testing.T, s alertstore.Store, now *wall, hookURL string) *Alerter {
	t.Helper()
	a, err := New(Config{Telemetry: daemon.Telemetry{Logger: quiet()}, Bus: bus.Config{Brokers: []string{"127.0.0.1:1"}},
		Store: s, NoPublish: true, Now: now.Now,
		Receivers:        []notify.Config{{Name: "hook", Type: notify.TypeWebhook, URL: hookURL}},
		DefaultReceivers: []string{"hook"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.reloadRules(t.Context()); err != nil {
		t.Fatal(err)
	}
	return a
}

func eventMsg(t testing.TB, partition int, offset int64, ev schemas.Event) kafka.Message {
	t.Helper()
	v, err := schemas.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: bus.TopicEvents, Partition: partition, Offset: offset, Key: []byte(ev.Service), Value: v}
}

func alerts(t *testing.T, s alertstore.Store, f alertstore.AlertFilter) []alertstore.Alert {
	t.Helper()
	f.Limit = 1000
	out, err := s.ListAlerts(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// flushAll flushes every partition's batch, then runs the time-driven work, as the consumer
// and its ticker would.
func flushAll(ctx context.Context, rt *realtime) error {
	for part := range rt.parts {
		if err := rt.flush(ctx, part); err != nil {
			return err
		}
	}
	return rt.tick(ctx)
}
