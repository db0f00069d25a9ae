package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/reconcile"
	"github.com/mercury-apm/mercury/reconcile/reconciletest"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

func serve(t *testing.T, room *Room) *http.ServeMux {
	t.Helper()
	mux := http.NewServeMux()
	rt, err := api.NewRouter(mux, prometheus.NewRegistry(), slog.New(slog.DiscardHandler), "")
	if err != nil {
		t.Fatal(err)
	}
	room.Register(rt)
	return mux
}

func get(mux *http.ServeMux, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	return rec
}

// Hostile parameters get 400 with a message saying what is wrong, before anything is read;
// an audit without brokers or a metric store is 503 naming what is missing.
func TestBadParameters(t *testing.T) {
	mux := serve(t, &Room{})
	for q, want := range map[string]string{
		"":                                       "from and to are required",
		"from=2026-12-04T10:00:00Z":              "from and to are required",
		"from=yesterday&to=2026-12-04T10:00:00Z": "want RFC 3339",
		"from=2026-12-04T10:00:00Z&to=2026-12-04T09:00:00Z":            "not before",
		"from=2026-12-04T10:00:00Z&to=2026-12-04T10:00:00Z":            "not before",
		"from=2026-12-04T10:00:30Z&to=2026-12-04T10:00:40Z&x=1":        "unknown parameter",
		"from=2026-12-04T00:00:00Z&to=2026-12-04T06:00:01Z":            "longer than 6h",
		"from=9007199254740992&to=9007199254740993":                    "out of range",
		"from=2026-12-04T10:00:00Z&to=" + strings.Repeat("9", 400):     "want RFC 3339",
		"from=2026-12-04T10:00:00%2B99:00&to=2026-12-04T11:00:00Z":     "want RFC 3339",
		"from=1764842400000&to=1764842400000":                          "not before",
		"from=2026-12-04T10:00:00Z&from=2026-12-04T12:00:00Z&to=13:00": "want RFC 3339",
	} {
		rec := get(mux, "/api/v1/audit?"+q)
		var e api.Error
		if rec.Code != 400 || json.Unmarshal(rec.Body.Bytes(), &e) != nil || !strings.Contains(e.Error, want) {
			t.Errorf("%q: %d %s, want 400 containing %q", q, rec.Code, rec.Body, want)
		}
	}
	rec := get(mux, "/api/v1/audit?from=2026-12-04T10:00:00Z&to=2026-12-04T11:00:00Z")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "no brokers") {
		t.Errorf("without brokers: %d %s", rec.Code, rec.Body)
	}
}

// One audit at a time: a second one meanwhile is told to come back.
func TestOneAuditAtATime(t *testing.T) {
	room := &Room{Config: reconcile.Config{Bus: bus.Config{Brokers: []string{"127.0.0.1:1"}}, Metrics: nopMetrics{}}}
	mux := serve(t, room)
	room.busy <- struct{}{}
	rec := get(mux, "/api/v1/audit?from=2026-12-04T10:00:00Z&to=2026-12-04T11:00:00Z")
	if rec.Code != http.StatusTooManyRequests || !strings.Contains(rec.Body.String(), "another audit") {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}

type nopMetrics struct{ metricstore.Store }

// A real audit through the endpoint: service checkout's host reported 3 spans in each of two
// minutes; one of the second minute never reached mercury.spans, and the metric store has
// the first minute only. The report says: first minute whole, second lost at shipped (1)
// and, of what was shipped, at aggregated (2).
func TestAuditThroughTheAPI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := reconciletest.Start(t, ctx)
	bc, traces, ms := env.Bus, env.Traces, env.Metrics

	a := time.Now().Truncate(time.Minute).Add(-5 * time.Minute)
	minutes := []time.Time{a, a.Add(time.Minute)}
	var spans []schemas.Span
	var msgs []kafka.Message
	for k, m := range minutes {
		for j := 0; j < 3-k; j++ {
			sp := schemas.Span{TraceID: schemas.TraceID{0xab, byte(k), byte(j)}, SpanID: schemas.SpanID{1}, Domain: "shop", Service: "checkout",
				Operation: "POST /checkout", Kind: schemas.KindServer, StartUnixNano: m.Add(time.Duration(j) * 10 * time.Second).UnixNano(), SampleRate: 1}
			v, err := schemas.Marshal(&sp)
			if err != nil {
				t.Fatal(err)
			}
			spans = append(spans, sp)
			msgs = append(msgs, kafka.Message{Topic: bus.TopicSpans, Key: sp.TraceID[:], Value: v})
		}
	}
	hb := schemas.Heartbeat{TimeUnixNano: a.Add(2 * time.Minute).UnixNano(), Service: "checkout", Host: "co-1", PID: 3,
		Stats: map[string]int64{schemas.StatMinutePrefix + fmt.Sprint(a.Unix()): 3, schemas.StatMinutePrefix + fmt.Sprint(a.Unix()+60): 3}}
	v, err := schemas.Marshal(&hb)
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, kafka.Message{Topic: bus.TopicHeartbeats, Key: []byte("checkout"), Value: v})
	w, err := bus.NewWriter(bc, bus.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := traces.WriteSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	labels := metric.Labels{Domain: "shop", Service: "checkout", Operation: "POST /checkout", Kind: schemas.KindServer}
	var st metric.Stats
	for range 3 {
		st.Add(int64(time.Millisecond), metric.Weight(1), false)
	}
	if err := ms.Upsert(ctx, []metricstore.Upsert{{Labels: labels, Point: metricstore.Point{SeriesID: labels.ID(), Minute: a.Unix(), Revision: 1, Stats: st}}}); err != nil {
		t.Fatal(err)
	}

	mux := serve(t, &Room{Config: reconcile.Config{Bus: bc, Traces: traces, Metrics: ms}})
	rec := get(mux, "/api/v1/audit?from="+a.Format(time.RFC3339)+"&to="+fmt.Sprint(a.Add(2*time.Minute).UnixMilli()))
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var rep reconcile.Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Missing != 1 || len(rep.Rows) != 2 {
		t.Fatalf("report: %s", rec.Body)
	}
	first, second := rep.Rows[0], rep.Rows[1]
	if first.Service != "checkout" || !first.Minute.Equal(a) || *first.Reported != 3 || first.Shipped != 3 || first.Stored != 3 ||
		first.AggregatedUnits != 3*metric.Units || len(first.Losses) != 0 {
		t.Errorf("first minute: %+v", first)
	}
	want := []reconcile.Gap{{Stage: reconcile.StageShipped, Spans: 1}, {Stage: reconcile.StageAggregated, Spans: 2}}
	if *second.Reported != 3 || second.Shipped != 2 || second.Stored != 2 || second.AggregatedUnits != 0 ||
		fmt.Sprint(second.Losses) != fmt.Sprint(want) || second.LostAt() != reconcile.StageShipped {
		t.Errorf("second minute: %+v, want losses %v", second, want)
	}
}
