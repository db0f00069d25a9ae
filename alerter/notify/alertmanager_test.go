package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// startAlertmanager runs a real Alertmanager (Debian package prometheus-alertmanager) on
// loopback with a throwaway config and storage, and returns its base URL.
// Its one receiver is a webhook to hookURL, so the test also sees what Alertmanager routes.
func startAlertmanager(t *testing.T, hookURL string) string {
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		if bin, err = exec.LookPath("alertmanager"); err != nil {
			t.Skip("Alertmanager not installed (apt-get install prometheus-alertmanager): skipping the real Alertmanager test")
		}
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(`route:
  receiver: hook
  group_by: [mercury_key]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: `+hookURL+`
        send_resolved: true
`), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=")
	out, _ := os.Create(filepath.Join(dir, "log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		out.Close()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("alertmanager log:\n%s", log)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("alertmanager not ready after 20 s: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond) // polling a real process coming up
	}
}

// gettableAlert is the part of Alertmanager's GET /api/v2/alerts reply the test reads.
type gettableAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func amAlerts(t *testing.T, base, key string) []gettableAlert {
	t.Helper()
	q := url.Values{"filter": {fmt.Sprintf("mercury_key=%q", key)}}
	resp, err := http.Get(base + "/api/v2/alerts?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET alerts: %s: %s", resp.Status, b)
	}
	var out []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// amHook receives Alertmanager's own webhook notifications.
type amHook chan amNotification

type amNotification struct {
	Status string `json:"status"`
	Alerts []struct {
		Labels map[string]string `json:"labels"`
		EndsAt time.Time         `json:"endsAt"`
	} `json:"alerts"`
}

func (h amHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n amNotification
	if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h <- n
}

func (h amHook) next(t *testing.T, status string) amNotification {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case n := <-h:
			if n.Status == status {
				return n
			}
		case <-timeout:
			t.Fatalf("alertmanager sent no %s notification in 30 s", status)
		}
	}
}

func TestRealAlertmanagerFiresAndResolves(t *testing.T) {
	hook := make(amHook, 16)
	hs := httptest.NewServer(hook)
	defer hs.Close()
	base := startAlertmanager(t, hs.URL)
	rcv, err := notify.Build([]notify.Config{{Name: "am", Type: notify.TypeAlertmanager, URL: base}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	a := alertstore.Alert{ID: "m-1", Key: "metric/payments/err-rate/pay|POST /pay", Kind: alertstore.KindMetric,
		Rule: "err-rate", Strategy: "payments", Level: alertstore.LevelAlarm, State: alertstore.StateFiring,
		Service: "pay", Operation: "POST /pay", Summary: "pay POST /pay error_rate 0.3 > 0.05", StartsAt: start}
	n := notify.Notification{Event: notify.Fired, Alert: a, Links: notify.Links{Alert: "http://query/api/v1/alerts/m-1"}}
	if err := rcv["am"].Notify(t.Context(), n); err != nil {
		t.Fatalf("post fired: %v", err)
	}
	got := amAlerts(t, base, a.Key)
	if len(got) != 1 || got[0].Status.State != "active" || got[0].Labels["alertname"] != "err-rate" ||
		got[0].Labels["severity"] != "alarm" || got[0].Annotations["mercury_id"] != "m-1" || !got[0].StartsAt.Equal(start) {
		t.Fatalf("alertmanager holds %+v, want one active err-rate alarm", got)
	}
	// Alertmanager routes it: wait for its firing notification before resolving.
	if f := hook.next(t, "firing"); len(f.Alerts) != 1 || f.Alerts[0].Labels["mercury_key"] != a.Key {
		t.Fatalf("firing notification %+v", f)
	}

	resolved := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
	n.Event, n.Alert.State, n.Alert.ResolvedAt = notify.Resolved, alertstore.StateResolved, resolved
	if err := rcv["am"].Notify(t.Context(), n); err != nil {
		t.Fatalf("post resolved: %v", err)
	}
	// The API lists only unresolved alerts: the resolution shows as the alert leaving it.
	if got = amAlerts(t, base, a.Key); len(got) != 0 {
		t.Fatalf("after resolve alertmanager still lists %+v", got)
	}
	// And Alertmanager routed the resolution, with our endsAt.
	r := hook.next(t, "resolved")
	if len(r.Alerts) != 1 || !r.Alerts[0].EndsAt.Equal(resolved) {
		t.Fatalf("resolved notification %+v, want endsAt %v", r, resolved)
	}
}
