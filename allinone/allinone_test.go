package allinone_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/allinone"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/query/agents"
	"github.com/mercury-apm/mercury/query/client"
	"github.com/mercury-apm/mercury/query/traces"
)

// TestDemoEndToEnd: demo traffic with known order ids; within 5 s a search by order id returns
// the trace with every span of every service, in the right tree. A restart reuses the data.
func TestDemoEndToEnd(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := start(ctx, allinone.Config{DataDir: dir, KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OTLPHTTPAddr: "off", OTLPGRPCAddr: "off", Demo: true, DemoEvery: -1, Telemetry: daemon.Telemetry{Logger: log}})
	if err != nil {
		t.Fatal(err)
	}
	qc := &client.Client{BaseURL: s.QueryURL()}
	var ids []int64
	for i := int64(0); i < 3; i++ {
		id := 777000 + i
		if _, err := s.Demo().Order(ctx, id, "u"+strconv.Itoa(int(i))); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	done := time.Now()
	var tr traces.Trace
	for _, id := range ids {
		tr = waitForTrace(t, qc, id, done.Add(5*time.Second))
		if got := tr.Services; len(got) != 3 {
			t.Fatalf("order %d: services %v", id, got)
		}
		root := tr.Roots[0]
		// api server → api client → order server → {SQL insert, order client → payment server, SQL update}
		if len(tr.Roots) != 1 || root.Service != "api" || root.Operation != "POST /orders/{id}" || root.BusinessKeys["order_id"] != strconv.FormatInt(id, 10) {
			t.Fatalf("root: %+v", root)
		}
		var ops []string
		var walk func(sp *traces.Span, depth int)
		walk = func(sp *traces.Span, depth int) {
			ops = append(ops, strconv.Itoa(depth)+" "+sp.Service+" "+sp.Kind+" "+sp.Operation)
			for _, c := range sp.Children {
				walk(c, depth+1)
			}
		}
		walk(root, 0)
		want := []string{
			"0 api SERVER POST /orders/{id}",
			"1 api CLIENT HTTP POST",
			"2 order SERVER POST /orders/{id}/checkout",
			"3 order CLIENT INSERT OR REPLACE INTO orders (id, user_id, amount, status) VALUES (?, ?, ?, ?)",
			"3 order CLIENT HTTP POST",
			"4 payment SERVER POST /payments/{id}",
			"3 order CLIENT UPDATE orders SET status = ? WHERE id = ?",
		}
		if len(ops) != len(want) {
			t.Fatalf("order %d tree:\n%v\nwant\n%v", id, ops, want)
		}
		for i := range want {
			if ops[i] != want[i] {
				t.Fatalf("order %d tree:\n%v\nwant\n%v", id, ops, want)
			}
		}
	}
	// Agents report in through heartbeats.
	waitFor(t, time.Now().Add(15*time.Second), func() bool {
		v, err := agentsOf(qc)
		return err == nil && len(v) == 3
	})
	cancel()
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	// Restart on the same data: the traces are still there.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	s2, err := start(ctx2, allinone.Config{DataDir: dir, KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OTLPHTTPAddr: "off", OTLPGRPCAddr: "off", Telemetry: daemon.Telemetry{Logger: log}})
	if err != nil {
		t.Fatal(err)
	}
	waitForTrace(t, &client.Client{BaseURL: s2.QueryURL()}, ids[0], time.Now().Add(5*time.Second))
	cancel2()
	s2.Wait()
}

func agentsOf(c *client.Client) ([]string, error) {
	var v agents.View
	if err := c.Get(context.Background(), "/api/v1/agents", &v); err != nil {
		return nil, err
	}
	var out []string
	for _, a := range v.Agents {
		out = append(out, a.Service)
	}
	sort.Strings(out)
	return out, nil
}

func waitForTrace(t *testing.T, c *client.Client, orderID int64, deadline time.Time) traces.Trace {
	t.Helper()
	var last string
	for time.Now().Before(deadline) {
		res, err := c.Search(context.Background(), url.Values{"bk": {"order_id:" + strconv.FormatInt(orderID, 10)}})
		if err == nil && len(res.Traces) == 1 && res.Traces[0].SpanCount == 7 {
			tr, err := c.Trace(context.Background(), res.Traces[0].TraceID)
			if err == nil {
				return tr
			}
		}
		last = ""
		if err != nil {
			last = err.Error()
		} else if len(res.Traces) > 0 {
			last = strconv.Itoa(res.Traces[0].SpanCount) + " spans"
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("order %d: no complete trace by the deadline (last: %s)", orderID, last)
	return traces.Trace{}
}

func waitFor(t *testing.T, deadline time.Time, cond func() bool) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met by the deadline")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOneMetricsEndpoint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	// Demo (in-process shippers) and an extra spool (a suite shipper) register the same
	// metric names side by side.
	s, err := start(ctx, allinone.Config{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OTLPHTTPAddr: "off", OTLPGRPCAddr: "off", Demo: true, DemoEvery: -1,
		Spools: []string{t.TempDir()}, Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); s.Wait() }()
	if _, err := agentsOf(&client.Client{BaseURL: s.QueryURL()}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.QueryURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"mercury_collector_spans_total", "mercury_query_requests_total", "mercury_shipper_", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// running is a pipeline being run by start; Wait waits for Run to return.
type running struct {
	*allinone.Pipeline
	done chan error
}

func (r running) Wait() error { return <-r.done }

// start builds the pipeline and runs it until ctx ends.
func start(ctx context.Context, cfg allinone.Config) (running, error) {
	p, err := allinone.New(ctx, cfg)
	if err != nil {
		return running{}, err
	}
	r := running{p, make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	return r, nil
}

// An OTLP port held by another process (a collector already running) stops `mercury up` with
// a message that says so, and nothing it had started stays open.
func TestOTLPPortTaken(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg := allinone.Config{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OTLPHTTPAddr: "127.0.0.1:0",
		OTLPGRPCAddr: held.Addr().String(), Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}}
	if _, err := allinone.New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "OTLP/gRPC ingest (another collector on the port?") {
		t.Fatalf("New = %v", err)
	}
	// The data directory is free again: a second pipeline opens it.
	cfg.OTLPGRPCAddr = "off"
	p, err := allinone.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("after the failed start: %v", err)
	}
	if p.OTLPGRPCAddr() != "" || p.OTLPHTTPURL() == "" {
		t.Fatalf("OTLP addresses: %q %q", p.OTLPGRPCAddr(), p.OTLPHTTPURL())
	}
	p.Close()
}

// TestDemoShowsMetricsTopologyAndAlerts: what a newcomer sees after `make run` — a real
// alert from the demo's payment failures, then minute points and the topology with the
// database as a virtual node.
func TestDemoShowsMetricsTopologyAndAlerts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := start(ctx, allinone.Config{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		OTLPHTTPAddr: "off", OTLPGRPCAddr: "off", Demo: true, DemoEvery: 20 * time.Millisecond,
		Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); s.Wait() }()
	qc := &client.Client{BaseURL: s.QueryURL()}
	var alerts struct {
		Alerts []struct {
			Service, Kind string
			TraceIDs      []string `json:"trace_ids"`
		} `json:"alerts"`
	}
	waitFor(t, time.Now().Add(30*time.Second), func() bool {
		return qc.Get(context.Background(), "/api/v1/alerts", &alerts) == nil && len(alerts.Alerts) > 0
	})
	if a := alerts.Alerts[0]; a.Service != "payment" || a.Kind != "event" || len(a.TraceIDs) == 0 {
		t.Fatalf("alert: %+v", a)
	}
	var topo struct {
		Nodes []struct {
			ID      string
			Virtual bool
		}
		Edges []struct{ Source, Target string }
	}
	waitFor(t, time.Now().Add(90*time.Second), func() bool {
		return qc.Get(context.Background(), "/api/v1/topology", &topo) == nil && len(topo.Edges) >= 3
	})
	var edges []string
	for _, e := range topo.Edges {
		edges = append(edges, e.Source+"→"+e.Target)
	}
	sort.Strings(edges)
	if got := strings.Join(edges, " "); got != "api→order order→orders-db order→payment" {
		t.Fatalf("edges %s", got)
	}
	var series struct {
		Points []struct {
			V *float64 `json:"v"`
		} `json:"points"`
	}
	nonZero := 0
	waitFor(t, time.Now().Add(60*time.Second), func() bool {
		if qc.Get(context.Background(), "/api/v1/metrics?service=order&metric=count", &series) != nil {
			return false
		}
		nonZero = 0
		for _, p := range series.Points {
			if p.V != nil && *p.V > 0 {
				nonZero++
			}
		}
		return nonZero > 0
	})
	if nonZero == 0 {
		t.Fatalf("no minute with order spans: %+v", series)
	}
}
