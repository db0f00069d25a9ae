package alerts_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/query/alerts"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/prometheus/client_golang/prometheus"
)

var t0 = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)

type client struct {
	t     *testing.T
	base  string
	token string
}

func setup(t *testing.T, token string) (*client, alertstore.Store) {
	s, err := pebblestore.OpenAlerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	board, err := alerts.New(alerts.Config{Store: s, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	rt, err := api.NewRouter(mux, prometheus.NewRegistry(), slog.New(slog.DiscardHandler), token)
	if err != nil {
		t.Fatal(err)
	}
	board.Register(rt)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &client{t: t, base: srv.URL, token: token}, s
}

// do sends a request (with the token when auth) and decodes the JSON reply into out.
func (c *client) do(method, path, body string, auth bool, out any) int {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("X-Mercury-User", "alice")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func seed(t *testing.T, s alertstore.Store) {
	for i, a := range []alertstore.Alert{
		{ID: "a1", Key: "k1", Kind: alertstore.KindEvent, Level: alertstore.LevelWarning, State: alertstore.StateFiring, Service: "payment", StartsAt: t0,
			Outbox: []alertstore.Notice{{ID: "n", Receiver: "hook", Event: "fired", NextAt: t0}}},
		{ID: "a2", Key: "k2", Kind: alertstore.KindMetric, Level: alertstore.LevelAlarm, State: alertstore.StateFiring, Service: "order", StartsAt: t0.Add(time.Minute)},
		{ID: "a3", Key: "k3", Kind: alertstore.KindEvent, Level: alertstore.LevelAlarm, State: alertstore.StateResolved, Service: "payment", StartsAt: t0.Add(2 * time.Minute)},
	} {
		if _, err := s.CreateAlert(t.Context(), a); err != nil {
			t.Fatal(i, err)
		}
	}
}

func TestAlertsListGetAck(t *testing.T) {
	c, s := setup(t, "secret")
	seed(t, s)
	var list struct{ Alerts []alertstore.Alert }
	if code := c.do("GET", "/api/v1/alerts?state=firing", "", false, &list); code != 200 || len(list.Alerts) != 2 || list.Alerts[0].ID != "a2" {
		t.Fatalf("firing: %d %+v", code, list)
	}
	if c.do("GET", "/api/v1/alerts?state=firing&level=warning&service=payment", "", false, &list); len(list.Alerts) != 1 || list.Alerts[0].ID != "a1" || list.Alerts[0].Outbox != nil {
		t.Fatalf("filtered: %+v", list)
	}
	var e map[string]string
	if code := c.do("GET", "/api/v1/alerts?state=burning", "", false, &e); code != 400 || !strings.Contains(e["error"], "state") {
		t.Fatalf("bad state: %d %v", code, e)
	}
	if code := c.do("GET", "/api/v1/alerts/nope", "", false, &e); code != 404 {
		t.Fatalf("missing alert: %d", code)
	}
	if code := c.do("POST", "/api/v1/alerts/a1/ack", `{"comment":"on it"}`, false, &e); code != 401 {
		t.Fatalf("ack without token: %d", code)
	}
	var al alertstore.Alert
	if code := c.do("POST", "/api/v1/alerts/a1/ack", `{"comment":"on it"}`, true, &al); code != 200 || al.AckedBy != "alice" || !al.AckedAt.Equal(t0) {
		t.Fatalf("ack: %d %+v", code, al)
	}
	if code := c.do("POST", "/api/v1/alerts/a1/ack", `{"by":"bob"}`, true, &e); code != 409 {
		t.Fatalf("second ack: %d %v", code, e)
	}
	c.do("GET", "/api/v1/alerts/a1", "", false, &al)
	if last := al.History[len(al.History)-1]; last.What != "acked" || last.By != "alice" || last.Note != "on it" {
		t.Fatalf("history: %+v", al.History)
	}
}

func TestWritesNeedAToken(t *testing.T) {
	c, s := setup(t, "")
	seed(t, s)
	var e map[string]string
	if code := c.do("POST", "/api/v1/alerts/a1/ack", `{}`, true, &e); code != 403 {
		t.Fatalf("ack with writes disabled: %d", code)
	}
	if code := c.do("GET", "/api/v1/alerts", "", false, nil); code != 200 {
		t.Fatalf("reads stay open: %d", code)
	}
}

func TestSilences(t *testing.T) {
	c, _ := setup(t, "secret")
	var sil alertstore.Silence
	body := `{"matchers":[{"name":"service","value":"payment"}],"ends_at":"2026-12-03T09:00:00Z","comment":"deploy"}`
	if code := c.do("POST", "/api/v1/silences", body, true, &sil); code != 201 || sil.ID == "" || sil.CreatedBy != "alice" || !sil.StartsAt.Equal(t0) {
		t.Fatalf("create: %d %+v", code, sil)
	}
	var e map[string]string
	if code := c.do("POST", "/api/v1/silences", `{"matchers":[],"ends_at":"2026-12-03T09:00:00Z"}`, true, &e); code != 400 {
		t.Fatalf("silence of everything: %d %v", code, e)
	}
	if code := c.do("POST", "/api/v1/silences", `{"matcher":[{"name":"x","value":"y"}]}`, true, &e); code != 400 || !strings.Contains(e["error"], "unknown field") {
		t.Fatalf("typo in a field: %d %v", code, e)
	}
	if code := c.do("DELETE", "/api/v1/silences/"+sil.ID, "", true, &sil); code != 200 || !sil.EndsAt.Equal(t0) {
		t.Fatalf("expire: %d %+v", code, sil)
	}
	var list struct{ Silences []alertstore.Silence }
	if c.do("GET", "/api/v1/silences", "", false, &list); len(list.Silences) != 1 || list.Silences[0].Active(t0) {
		t.Fatalf("list: %+v", list)
	}
}

func TestRulesAndStrategiesCRUD(t *testing.T) {
	c, _ := setup(t, "secret")
	var r alertstore.Rule
	rule := `{"kind":"metric","for":5,"conditions":[{"metric":"error_rate","op":">","baseline":"yesterday","warning":3}]}`
	if code := c.do("PUT", "/api/v1/rules/err-x3?version=0", rule, true, &r); code != 200 || r.Version != 1 || r.Name != "err-x3" || r.UpdatedBy != "alice" {
		t.Fatalf("create rule: %d %+v", code, r)
	}
	var e map[string]string
	if code := c.do("PUT", "/api/v1/rules/err-x3?version=0", rule, true, &e); code != 409 {
		t.Fatalf("stale version: %d %v", code, e)
	}
	if code := c.do("PUT", "/api/v1/rules/bad?version=0", `{"kind":"metric","conditions":[{"metric":"p42","op":">","warning":1}]}`, true, &e); code != 400 || !strings.Contains(e["error"], "p42") {
		t.Fatalf("invalid rule: %d %v", code, e)
	}
	if code := c.do("PUT", "/api/v1/rules/other?version=0", `{"name":"err-x3","kind":"event"}`, true, &e); code != 400 {
		t.Fatalf("name mismatch: %d", code)
	}
	if code := c.do("PUT", "/api/v1/rules/err-x3?version=1", strings.Replace(rule, `"for":5`, `"for":3`, 1), true, &r); code != 200 || r.Version != 2 || r.For != 3 {
		t.Fatalf("update: %d %+v", code, r)
	}
	if c.do("GET", "/api/v1/rules/err-x3?version=1", "", false, &r); r.For != 5 {
		t.Fatalf("version 1: %+v", r)
	}
	var hist struct{ Versions []alertstore.Rule }
	if c.do("GET", "/api/v1/rules/err-x3/history", "", false, &hist); len(hist.Versions) != 2 {
		t.Fatalf("history: %+v", hist)
	}
	var st alertstore.Strategy
	if code := c.do("PUT", "/api/v1/strategies/pay?version=0", `{"rules":["missing"]}`, true, &e); code != 400 || !strings.Contains(e["error"], "missing") {
		t.Fatalf("strategy naming a missing rule: %d %v", code, e)
	}
	strategy := `{"rules":["err-x3"],"selectors":[{"service":"payment"}],"receivers":{"alarm":["page"],"warning":["hook"]}}`
	if code := c.do("PUT", "/api/v1/strategies/pay?version=0", strategy, true, &st); code != 200 || st.Version != 1 {
		t.Fatalf("create strategy: %d %+v", code, st)
	}
	if code := c.do("DELETE", "/api/v1/rules/err-x3?version=2", "", true, &e); code != 409 || !strings.Contains(e["error"], "strategy pay") {
		t.Fatalf("delete a rule in use: %d %v", code, e)
	}
	if code := c.do("DELETE", "/api/v1/strategies/pay?version=1", "", true, &e); code != 200 {
		t.Fatalf("delete strategy: %d %v", code, e)
	}
	if code := c.do("DELETE", "/api/v1/rules/err-x3?version=2", "", true, &e); code != 200 {
		t.Fatalf("delete rule: %d %v", code, e)
	}
	var list struct{ Rules []alertstore.Rule }
	if c.do("GET", "/api/v1/rules", "", false, &list); len(list.Rules) != 0 {
		t.Fatalf("rules after delete: %+v", list)
	}
	if code := c.do("GET", "/api/v1/rules/err-x3", "", false, &e); code != 404 {
		t.Fatalf("deleted rule: %d", code)
	}
}

func TestEventSearch(t *testing.T) {
	c, s := setup(t, "secret")
	var evs []alertstore.StoredEvent
	for i := range 4 {
		evs = append(evs, alertstore.StoredEvent{ID: "mercury.events-0-" + string(rune('0'+i)), Signature: []string{"s1", "s2"}[i%2],
			Event: schemas.Event{TimeUnixNano: t0.Add(time.Duration(i) * time.Second).UnixNano(), Service: "payment",
				Type: schemas.EventException, Name: "E", Stack: "main.f\n\tmain.go:1\n", TraceID: schemas.TraceID{byte(i + 1)}}})
	}
	if err := s.PutEvents(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Events []map[string]any
	}
	q := "/api/v1/events?signature=s2&from=" + t0.Format(time.RFC3339) + "&to=" + t0.Add(time.Hour).Format(time.RFC3339)
	if code := c.do("GET", q, "", false, &got); code != 200 || len(got.Events) != 2 || got.Events[0]["trace_id"] != "04000000000000000000000000000000" || got.Events[0]["stack"] == "" {
		t.Fatalf("search: %d %+v", code, got)
	}
	var e map[string]string
	if code := c.do("GET", "/api/v1/events?from=yesterday", "", false, &e); code != 400 {
		t.Fatalf("bad time: %d", code)
	}
	var one map[string]any
	if code := c.do("GET", "/api/v1/events/mercury.events-0-1", "", false, &one); code != 200 || one["signature"] != "s2" {
		t.Fatalf("get: %d %v", code, one)
	}
}

// TestBoardParameters: the board parses its parameters like every endpoint of the query
// service: an unknown name or a bad value is a 400 naming it.
func TestBoardParameters(t *testing.T) {
	c, _ := setup(t, "tok")
	for _, path := range []string{"/api/v1/alerts?limit=-1", "/api/v1/alerts?state=burning", "/api/v1/alerts?bogus=1",
		"/api/v1/events?from=yesterday", "/api/v1/rules/r?version=x", "/api/v1/events?limit=5000"} {
		var e struct{ Error string }
		if code := c.do("GET", path, "", false, &e); code != 400 || e.Error == "" {
			t.Errorf("%s: %d %q", path, code, e.Error)
		}
	}
	if code := c.do("GET", "/api/v1/alerts?state=firing&limit=10", "", false, nil); code != 200 {
		t.Errorf("good parameters: %d", code)
	}
}
