package hbasestore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/hbaserest/hbasefake"
	"github.com/mercury-apm/mercury/storage/hbasestore"
	"github.com/mercury-apm/mercury/storage/storetest"
)

// newAlerts opens an alert store on url with tables of its own (a real gateway is shared by
// every test and run).
func newAlerts(t *testing.T, url string) *hbasestore.AlertStore {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	prefix := fmt.Sprintf("mercury:t%d_alert", time.Now().UnixNano())
	s, err := hbasestore.NewAlerts(context.Background(), hbasestore.AlertsConfig{URL: url, Prefix: prefix, Backoff: fastRetry, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAlertsConformance(t *testing.T) {
	backends(t, func(t *testing.T, url func(*testing.T) string) {
		storetest.AlertStore(t, func(t *testing.T) alertstore.Store { return newAlerts(t, url(t)) })
	})
}

func TestAlertsDefaultTables(t *testing.T) {
	srv := fake(t)
	s, err := hbasestore.NewAlerts(context.Background(), hbasestore.AlertsConfig{URL: srv.URL, Backoff: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, body := getStatus(t, srv.URL+"/mercury:alerts/schema")
	if code != 200 {
		t.Fatalf("mercury:alerts schema: %d %s", code, body)
	}
	for _, tb := range []string{"mercury:alert_rules", "mercury:alert_events", "mercury:alert_state"} {
		if code, body := getStatus(t, srv.URL+"/"+tb+"/schema"); code != 200 {
			t.Fatalf("%s: %d %s", tb, code, body)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAlert(context.Background(), "a"); !errors.Is(err, alertstore.ErrClosed) {
		t.Fatalf("read after close: %v, want ErrClosed", err)
	}
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Status
}

// TestAlertsConcurrentWriters: two store clients (two alerter instances) update one alert,
// put one rule and create alerts of one key at once. Every update lands exactly once, one
// rule write per version wins and the others get ErrConflict, and the key ends with one
// firing alert.
func TestAlertsConcurrentWriters(t *testing.T) {
	backends(t, func(t *testing.T, url func(*testing.T) string) {
		u := url(t)
		prefix := fmt.Sprintf("mercury:t%d_alert", time.Now().UnixNano())
		var stores [2]*hbasestore.AlertStore
		for i := range stores {
			s, err := hbasestore.NewAlerts(context.Background(), hbasestore.AlertsConfig{URL: u, Prefix: prefix, Backoff: fastRetry, MaxRaces: 1000})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			stores[i] = s
		}
		ctx := context.Background()
		t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
		if _, err := stores[0].CreateAlert(ctx, alertstore.Alert{ID: "a", Key: "k", State: alertstore.StateFiring, StartsAt: t0, Count: 0}); err != nil {
			t.Fatal(err)
		}
		const perWriter = 25
		var wg sync.WaitGroup
		errs := make(chan error, 4*perWriter)
		conflicts := make(chan int, 2)
		for w, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perWriter {
					if _, err := s.UpdateAlert(ctx, "a", func(a *alertstore.Alert) error {
						a.Count++
						a.Hosts = append(a.Hosts, fmt.Sprint("w", w))
						return nil
					}); err != nil {
						errs <- err
					}
				}
			}()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := alertstore.Rule{Name: "boom", Kind: alertstore.RuleEvent, Match: alertstore.EventMatch{Type: "exception"}}
				lost := 0
				for range perWriter {
					cur, err := s.GetRule(ctx, "boom", 0)
					if err != nil && !errors.Is(err, alertstore.ErrNotFound) {
						errs <- err
						return
					}
					r.Description = fmt.Sprint("writer ", w)
					if _, err := s.PutRule(ctx, r, cur.Version, fmt.Sprint(w)); errors.Is(err, alertstore.ErrConflict) {
						lost++
					} else if err != nil {
						errs <- err
					}
				}
				conflicts <- lost
			}()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					id := fmt.Sprintf("b%d-%d", w, i)
					at := t0.Add(time.Duration(i) * time.Minute)
					if _, err := s.CreateAlert(ctx, alertstore.Alert{ID: id, Key: "shared", State: alertstore.StateFiring, StartsAt: at}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		a, err := stores[1].GetAlert(ctx, "a")
		if err != nil || a.Count != 2*perWriter || len(a.Hosts) != 2*perWriter {
			t.Fatalf("after %d updates: count %d, hosts %d, %v", 2*perWriter, a.Count, len(a.Hosts), err)
		}
		h, err := stores[0].RuleHistory(ctx, "boom")
		if err != nil {
			t.Fatal(err)
		}
		lost := <-conflicts + <-conflicts
		if len(h)+lost != 2*perWriter {
			t.Fatalf("%d versions + %d conflicts, want %d puts", len(h), lost, 2*perWriter)
		}
		for i, r := range h {
			if r.Version != int64(i+1) {
				t.Fatalf("version %d is numbered %d", i+1, r.Version)
			}
		}
		firing, err := stores[0].ListAlerts(ctx, alertstore.AlertFilter{Key: "shared", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		open := 0
		for _, a := range firing {
			if a.State == alertstore.StateFiring {
				open++
			}
		}
		if len(firing) != 2*perWriter || open != 1 {
			t.Fatalf("key shared: %d alerts, %d firing; want %d and 1", len(firing), open, 2*perWriter)
		}
		if o, ok, err := stores[1].OpenAlert(ctx, "shared"); err != nil || !ok || o.State != alertstore.StateFiring {
			t.Fatalf("open alert of the shared key: %+v %v %v", o.ID, ok, err)
		}
	})
}

// TestAlertsLostReply: a check-and-put applied by the server whose reply is lost is retried
// into a 304; the store sees its own revision and applies the update once.
func TestAlertsLostReply(t *testing.T) {
	srv := fake(t)
	s := newAlerts(t, srv.URL)
	ctx := context.Background()
	if ok, err := s.CreateAlert(ctx, alertstore.Alert{ID: "a", Key: "k", State: alertstore.StateFiring}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	srv.FailAfter(http.MethodPut, "check", http.StatusServiceUnavailable, 1)
	a, err := s.UpdateAlert(ctx, "a", func(a *alertstore.Alert) error { a.Count++; return nil })
	if err != nil || a.Count != 1 {
		t.Fatalf("update with a lost reply: count %d, %v", a.Count, err)
	}
	if got, _ := s.GetAlert(ctx, "a"); got.Count != 1 {
		t.Fatalf("stored count %d, want 1 (applied once)", got.Count)
	}
	srv.FailAfter(http.MethodPut, "check", http.StatusServiceUnavailable, 1)
	if ok, err := s.CreateAlert(ctx, alertstore.Alert{ID: "b", Key: "k2", State: alertstore.StateFiring}); err != nil || !ok {
		t.Fatalf("create with a lost reply: created=%v %v, want true", ok, err)
	}
	srv.FailAfter(http.MethodPut, "check", http.StatusServiceUnavailable, 1)
	r := alertstore.Rule{Name: "boom", Kind: alertstore.RuleEvent, Match: alertstore.EventMatch{Type: "exception"}}
	if r1, err := s.PutRule(ctx, r, 0, "x"); err != nil || r1.Version != 1 {
		t.Fatalf("put rule with a lost reply: %+v %v", r1.Versioned, err)
	}
}

// TestAlertsOutboxMarker: a delivered outbox stops being pending, and a notice added after
// a stale marker was read keeps the alert pending.
func TestAlertsOutboxMarker(t *testing.T) {
	s := newAlerts(t, fake(t).URL)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	n := alertstore.Notice{ID: "n", Receiver: "log", Event: "fired", NextAt: t0}
	if _, err := s.CreateAlert(ctx, alertstore.Alert{ID: "a", Key: "k", State: alertstore.StateFiring, StartsAt: t0, Outbox: []alertstore.Notice{n}}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.PendingAlerts(ctx, t0, 10); err != nil || len(p) != 1 {
		t.Fatalf("pending = %d %v, want 1", len(p), err)
	}
	if _, err := s.UpdateAlert(ctx, "a", func(a *alertstore.Alert) error { a.Outbox = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.PendingAlerts(ctx, t0, 10); len(p) != 0 { // removes the marker
		t.Fatalf("delivered alert pending: %d", len(p))
	}
	if _, err := s.UpdateAlert(ctx, "a", func(a *alertstore.Alert) error { a.Outbox = []alertstore.Notice{n}; return nil }); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.PendingAlerts(ctx, t0, 10); len(p) != 1 {
		t.Fatalf("a new notice after the marker was removed is not pending: %d", len(p))
	}
}

// TestAlertsFailures: the gateway's 5xx are retried; a malformed check is a permanent 400.
func TestAlertsFailures(t *testing.T) {
	srv := hbasefake.New()
	defer srv.Close()
	s := newAlerts(t, srv.URL)
	ctx := context.Background()
	srv.Fail(http.MethodPut, "check", http.StatusServiceUnavailable, 2)
	if ok, err := s.CreateAlert(ctx, alertstore.Alert{ID: "a", Key: "k", State: alertstore.StateFiring}); err != nil || !ok {
		t.Fatalf("create through two 503s: %v %v", ok, err)
	}
	srv.Fail(http.MethodGet, "get", http.StatusInternalServerError, 10)
	if _, err := s.GetAlert(ctx, "a"); err == nil {
		t.Fatal("a gateway failing every read: no error")
	}
	srv.Heal()
	if a, err := s.GetAlert(ctx, "a"); err != nil || a.ID != "a" {
		t.Fatalf("after heal: %v", err)
	}
}
