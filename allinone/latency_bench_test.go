package allinone_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/allinone"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/schemas"
)

// BenchmarkMetricRuleToAlert measures the whole metric path of issue 11: a service's agent
// records failing calls, its spool is shipped to the embedded broker, aggregator phase 1
// folds them into 20 s partials, phase 2 into the one-minute point on mercury.metrics.1m and
// the metric store, the alerter's rule `errors >= 5` fires, and the alert is published to
// mercury.alerts, where the benchmark reads it. Every stage runs on its defaults (agent flush
// 200 ms, shipper poll 100 ms, phase 1 flush 2 s / idle 200 ms, phase 2 flush 1 s).
//
// Latency is measured from the end of the last failing call to the alert's arrival. The path
// is event-time and emits revisions of open windows, so its delay does not depend on where in
// the minute the breach happens: a breach completed in a minute's last moment fires this long
// after the minute ends (target ≤ 45 s; the seed article's ≤ 2 min). Each iteration fails a
// new operation (a new series, so each fires).
func BenchmarkMetricRuleToAlert(b *testing.B) {
	dir := b.TempDir()
	spool := filepath.Join(dir, "bench-spool")
	const token = "bench-token"
	ctx, cancel := context.WithCancel(context.Background())
	s, err := start(ctx, allinone.Config{DataDir: dir, KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OTLPHTTPAddr: "off",
		OTLPGRPCAddr: "off", AdminToken: token, Spools: []string{spool}, Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); s.Wait() }()
	put := func(path, body string) {
		req, _ := http.NewRequest(http.MethodPut, s.QueryURL()+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			b.Fatalf("PUT %s: %s", path, resp.Status)
		}
	}
	put("/api/v1/rules/bench-errors?version=0", `{"kind":"metric","conditions":[{"metric":"errors","op":">=","warning":5}]}`)
	put("/api/v1/strategies/bench?version=0", `{"rules":["bench-errors"],"selectors":[{"service":"bench"}]}`)

	a, err := agent.New(agent.Config{Service: "bench", Domain: "bench", SpoolDir: spool})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close(context.Background())
	r, err := bus.NewReader(bus.Config{Brokers: []string{s.KafkaAddr()}}, bus.ReaderConfig{Topic: bus.TopicAlerts,
		GroupID: "bench-alerts", MaxWait: 10 * time.Millisecond, SessionTimeout: 6 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	// fail records five failing calls of op and returns when the last one ended.
	fail := func(op string) time.Time {
		var end time.Time
		for range 5 {
			_, sp := a.Start(context.Background(), op, agent.KindServer, agent.CategoryHTTP)
			sp.SetStatus(schemas.StatusError, 500)
			sp.End()
			end = time.Now()
		}
		return end
	}
	// await reads mercury.alerts until op's rule fires, for up to d.
	await := func(op string, d time.Duration) (time.Time, bool) {
		wait, stop := context.WithTimeout(ctx, d)
		defer stop()
		for {
			m, err := r.FetchMessage(wait)
			if err != nil {
				return time.Time{}, false
			}
			var al schemas.Alert
			if err := schemas.Unmarshal(m.Value, &al); err != nil {
				b.Fatal(err)
			}
			if ev, _ := bus.Header(m, "mercury.alert.event"); al.Rule == "bench-errors" && al.Operation == op && ev == "fired" {
				return time.Now(), true
			}
		}
	}
	// The alerter reloads rules every 5 s: warm up until one fires.
	for k := 0; ; k++ {
		op := fmt.Sprintf("warmup-%d", k)
		fail(op)
		if _, ok := await(op, 10*time.Second); ok {
			break
		}
		if k == 5 {
			b.Fatal("the rule never fired")
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		op := fmt.Sprintf("GET /op-%d", i)
		end := fail(op)
		at, ok := await(op, 2*time.Minute)
		if !ok {
			b.Fatalf("no alert for %s in 2 minutes", op)
		}
		lat = append(lat, at.Sub(end))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
}
