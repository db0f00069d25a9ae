package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/aggregator"
	"github.com/mercury-apm/mercury/alerter"
	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/collector"
	"github.com/mercury-apm/mercury/internal/testproc"
	"github.com/mercury-apm/mercury/reconcile"
	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/esstore/esfake"
	"github.com/mercury-apm/mercury/storage/hbaserest/hbasefake"
	"github.com/mercury-apm/mercury/storage/hbasestore"
)

// mercuryBin is the binary under test, built once by TestMain.
var mercuryBin string

func TestMain(m *testing.M) {
	if os.Getenv("MERCURY_RELIABILITY") == "" {
		os.Exit(m.Run()) // the drill skips itself
	}
	if mercuryBin = os.Getenv("MERCURY_BIN"); mercuryBin != "" {
		os.Exit(m.Run())
	}
	os.Exit(testproc.RunWithMercury(m, &mercuryBin))
}

// envInt reads a positive integer setting of the drill.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestReliability is the fault drill; `make reliability` runs it. Settings (environment):
// MERCURY_RELIABILITY_SPANS (default 1,000,000), MERCURY_RELIABILITY_SEED (default: the
// time), MERCURY_RELIABILITY_REPORT (write the report there), MERCURY_BIN (test that binary
// instead of building one).
func TestReliability(t *testing.T) {
	if mercuryBin == "" {
		t.Skip("the fault drill runs with MERCURY_RELIABILITY=1 (make reliability)")
	}
	spans := envInt(t, "MERCURY_RELIABILITY_SPANS", 1_000_000)
	seed := envInt(t, "MERCURY_RELIABILITY_SEED", int(time.Now().UnixNano()%1e9))
	rng := rand.New(rand.NewPCG(uint64(seed), 14))
	rep := &report{seed: seed, spans: spans, started: time.Now()}
	t.Logf("seed %d (MERCURY_RELIABILITY_SEED=%d repeats this run), %d spans", seed, seed, spans)
	dir, err := os.MkdirTemp("", "mercury-drill-run")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
			return
		}
		t.Logf("daemon logs and data are kept in %s", dir)
		if art := os.Getenv("MERCURY_ARTIFACTS"); art != "" { // CI keeps the logs, not /tmp
			logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
			for _, l := range logs {
				if b, err := os.ReadFile(l); err == nil {
					os.WriteFile(filepath.Join(art, "drill-"+filepath.Base(l)), b, 0o644)
				}
			}
		}
	})

	// The stores we cannot run here are their fakes, behind endpoints that can refuse.
	es, hb := esfake.New(), hbasefake.New()
	defer es.Close()
	defer hb.Close()
	esDown := &outage{refuse: func() { es.FailRequests(1, http.StatusTooManyRequests) }}
	hbDown := &outage{refuse: func() { hb.Fail("", "", http.StatusServiceUnavailable, 1) }}
	esURL, hbURL := esDown.serve(es.Config.Handler), hbDown.serve(hb.Config.Handler)
	defer esURL.Close()
	defer hbURL.Close()
	hook := &webhook{firing: map[string]int{}}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()

	brokerAddr := testproc.FreeAddr(t)
	cfg := bus.Config{Brokers: []string{brokerAddr}}
	broker := newDaemon(dir, "broker", testproc.FreeAddr(t), "broker", "--addr", brokerAddr, "--data", filepath.Join(dir, "broker"))
	var colls []*daemon // two in one consumer group: kills rebalance the partitions between them
	for i := range 2 {
		colls = append(colls, newDaemon(dir, fmt.Sprint("collector-", i+1), testproc.FreeAddr(t), "collector", "--brokers", brokerAddr,
			"--es", esURL.URL, "--hbase", hbURL.URL))
	}
	phase1 := newDaemon(dir, "phase1", testproc.FreeAddr(t), "aggregator", "--phase", "1", "--brokers", brokerAddr)
	phase2 := newDaemon(dir, "phase2", testproc.FreeAddr(t), "aggregator", "--phase", "2", "--brokers", brokerAddr, "--hbase", hbURL.URL)
	alert := newDaemon(dir, "alerter", testproc.FreeAddr(t), "alerter", "--brokers", brokerAddr, "--hbase", hbURL.URL, "--webhook", hookSrv.URL)

	// Traffic: three services, each with exception bursts at random times.
	perService := spans / len(serviceNames)
	duration := time.Duration(float64(perService) / spanRate * float64(time.Second))
	var svcs []*service
	var shippers []*daemon
	for _, name := range serviceNames {
		var bursts []time.Duration
		for range 4 {
			bursts = append(bursts, time.Duration(rng.Int64N(int64(duration*9/10))))
		}
		slices.Sort(bursts)
		s, err := newService(dir, name, bursts)
		if err != nil {
			t.Fatal(err)
		}
		svcs = append(svcs, s)
		shippers = append(shippers, newDaemon(dir, "ship-"+name, testproc.FreeAddr(t), "ship", "--spool", s.spool, "--brokers", brokerAddr))
	}
	putRules(t, hbURL.URL)
	daemons := slices.Concat([]*daemon{broker}, colls, []*daemon{phase1, phase2, alert}, shippers)
	t.Cleanup(func() {
		for _, d := range daemons {
			d.abandon()
		}
	})
	for _, d := range daemons {
		if err := d.start(); err != nil {
			t.Fatal(err)
		}
	}
	rep.faults = plan(rng, duration, 8, len(svcs))

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range svcs {
		rate := spanRate
		if s.name == "payment" {
			rate *= 2 // it samples half its traces
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, rand.New(rand.NewPCG(uint64(seed), uint64(i))), perService, rate, start)
		}()
	}
	// The faults, each at its time; a killed daemon stays down for the fault's length (a
	// fault finding its daemon still down from the last one waits for it).
	errs := make(chan error, len(rep.faults))
	for _, f := range rep.faults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Until(start.Add(f.at)))
			until := time.Now().Add(f.length).UnixNano()
			switch f.kind {
			case stallDisk:
				svcs[f.target].disk.stalledUntil.Store(until)
			case fillDisk:
				svcs[f.target].disk.fullUntil.Store(until)
			case esRefuses:
				esDown.until.Store(until)
			case hbaseRefuses:
				hbDown.until.Store(until)
			default:
				d := map[string]*daemon{killShipper: shippers[f.target], killCollector: colls[f.target%len(colls)], killPhase1: phase1,
					killPhase2: phase2, killAlerter: alert, killBroker: broker}[f.kind]
				errs <- d.crash(f.length)
			}
		}()
	}
	wg.Wait()
	rep.traffic = time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range svcs {
		if err := s.agent.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Drain: every shipper caught up with its spool, every consumer group with its topic.
	for _, d := range shippers {
		testproc.Eventually(t, d.name+" drained", 5*time.Minute, func() (bool, string) {
			lag, err := shipLag(d)
			return err == nil && lag == 0, fmt.Sprint(lag, err)
		})
	}
	groups := [][2]string{{collector.Group, bus.TopicSpans}, {aggregator.GroupPhase1, bus.TopicSpans},
		{aggregator.GroupPhase2, bus.TopicMetrics20s}, {"alerter", bus.TopicEvents}}
	testproc.Eventually(t, "consumers caught up", 5*time.Minute, func() (bool, string) {
		for _, g := range groups {
			lag, err := alerter.ConsumerLag(ctx, cfg, g[0], g[1])
			if err != nil || lag > 0 {
				return false, fmt.Sprintf("%s on %s: lag %d %v", g[0], g[1], lag, err)
			}
		}
		return true, ""
	})
	rep.drained = time.Since(start) - rep.traffic
	for _, d := range daemons[1:] {
		d.stop(t)
	}
	for _, d := range daemons {
		rep.kills += d.kills
	}

	check(t, ctx, rep, cfg, svcs, es, hb.URL, hook)
	audit(t, rep, brokerAddr, es.URL, hb.URL)
	broker.stop(t)
	rep.write(t)
}

// drillRule fires on checkout's POST /order as soon as its first minute has a call, and
// holds while traffic flows: exactly one alert per series, whatever restarts under it.
const drillRule = "drill-traffic"

func putRules(t *testing.T, hbURL string) {
	t.Helper()
	ctx := context.Background()
	s, err := hbasestore.NewAlerts(ctx, hbasestore.AlertsConfig{URL: hbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	one := 1.0
	if _, err := s.PutRule(ctx, alertstore.Rule{Name: drillRule, Kind: alertstore.RuleMetric,
		Conditions: []alertstore.Condition{{Metric: "count", Op: ">=", Warning: &one}}}, 0, "drill"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutStrategy(ctx, alertstore.Strategy{Name: "drill", Rules: []string{drillRule},
		Selectors: []alertstore.Selector{{Service: "checkout", Operation: "POST /order"}},
		Receivers: map[string][]string{alertstore.LevelWarning: {"webhook"}}}, 0, "drill"); err != nil {
		t.Fatal(err)
	}
}

// audit runs `mercury audit` over the drill: its per-minute stages must agree with what the
// drill counted itself, and it must find nothing lost (the agents' drops happen before they
// report what they wrote).
func audit(t *testing.T, rep *report, brokers, esURL, hbURL string) {
	t.Helper()
	cmd := exec.Command(mercuryBin, "audit", "--from", rep.started.Add(-time.Minute).UTC().Format(time.RFC3339),
		"--to", time.Now().Add(time.Minute).UTC().Format(time.RFC3339), "--brokers", brokers, "--es", esURL, "--hbase", hbURL, "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var r reconcile.Report
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("mercury audit: %v %v\n%s%s", err, jerr, out, stderr.String())
	}
	var reported, shipped, dups, stored int64
	for _, row := range r.Rows {
		if row.Reported != nil {
			reported += *row.Reported
		}
		shipped, dups, stored = shipped+row.Shipped, dups+row.Duplicates, stored+row.Stored
	}
	rep.verdict(t, err == nil && r.Missing == 0 && reported == shipped && shipped == int64(rep.distinct) &&
		dups == int64(rep.records-rep.distinct) && stored == int64(rep.rows),
		"mercury audit: exit %v, %d service-minutes lost spans; reported %d, shipped %d (+%d copies), stored %d over %d rows",
		cmd.ProcessState.ExitCode(), r.Missing, reported, shipped, dups, stored, len(r.Rows))
}

// spanRate is each service's pace in spans per second.
const spanRate = 6000.0

// shipLag is the records a shipper has not had acknowledged yet.
func shipLag(d *daemon) (int64, error) {
	resp, err := healthClient.Get(d.url + "/api/v1/ship/stats")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Stats map[string]int64 `json:"stats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	return body.Stats["shipper_lag_records"], nil
}

// webhook is the alerter's notification receiver: it counts firing notices per alert.
type webhook struct {
	mu     sync.Mutex
	firing map[string]int
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b notify.WebhookBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if b.Event == notify.Fired {
		h.firing[b.Alert.ID]++
	}
}
