package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/testproc"
	"github.com/mercury-apm/mercury/schemas"
)

// TestAlerterWiring: `mercury alerter` as its own process on the embedded broker, with a
// webhook receiver from its flags: a gateway breaker event on mercury.events arrives at the
// webhook as a fired alarm, and the process reports ready and stops cleanly on SIGTERM.
func TestAlerterWiring(t *testing.T) {
	b, err := broker.New(context.Background(), broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan notify.WebhookBody, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body notify.WebhookBody
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- body
	}))
	defer hook.Close()
	addr := testproc.FreeAddr(t)
	daemonProcess(t, "alerter", "--brokers", b.Addr(), "--data", t.TempDir(), "--http", addr, "--webhook", hook.URL)
	testproc.Eventually(t, "alerter ready", 30*time.Second, func() (bool, string) {
		code, body := get(t, "http://"+addr+"/readyz", nil)
		return code == 200, body
	})
	w, err := bus.NewWriter(bus.Config{Brokers: []string{b.Addr()}}, bus.WriterConfig{Topic: bus.TopicEvents})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	ev := schemas.Event{TimeUnixNano: time.Now().UnixNano(), Service: "gateway", Host: "gw-1", Type: schemas.EventBreaker,
		Name: "/pay", Message: "breaker_state from=closed to=open", Attributes: []schemas.KV{{Key: "to", Value: "open"}}}
	v, err := schemas.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte(ev.Service), Value: v}); err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-got:
		if body.Event != notify.Fired || body.Alert.Service != "gateway" || body.Alert.Level != "alarm" ||
			body.Links.Alert != "http://127.0.0.1:8080/api/v1/alerts/"+body.Alert.ID {
			t.Fatalf("webhook got %+v", body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook notification in 30 s")
	}
}
