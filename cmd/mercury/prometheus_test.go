package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/promtest"
	"github.com/mercury-apm/mercury/internal/testproc"
)

// A real Prometheus (Debian package prometheus) scrapes every daemon of a distributed
// Mercury, each its own `mercury` process, and finds each one up with its own metrics.
func TestRealPrometheusScrapesEveryDaemon(t *testing.T) {
	kafka := testproc.FreeAddr(t)
	brokers := []string{"--brokers", kafka}
	gwConf := filepath.Join(t.TempDir(), "gateway.yaml")
	gwAdmin := testproc.FreeAddr(t)
	if err := os.WriteFile(gwConf, fmt.Appendf(nil, "listen: %q\nadmin_listen: %q\nstate_file: %q\nroutes:\n  - name: api\n    prefix: /\n    service: api\n    tier: 1\n    local:\n      instances: [\"http://127.0.0.1:1\"]\n",
		testproc.FreeAddr(t), gwAdmin, filepath.Join(t.TempDir(), "state.json")), 0o644); err != nil {
		t.Fatal(err)
	}
	// job → its metrics address, the command that serves it, and the prefix of its own metrics.
	daemons := []struct {
		job, addr, metric string
		args              []string
	}{
		{job: "broker", metric: "go_", args: []string{"broker", "--addr", kafka, "--data", t.TempDir()}},
		{job: "collector", metric: "mercury_collector_", args: append([]string{"collector", "--data", t.TempDir()}, brokers...)},
		{job: "phase1", metric: "mercury_aggregator_phase1_", args: append([]string{"aggregator", "--phase", "1"}, brokers...)},
		{job: "phase2", metric: "mercury_aggregator_phase2_", args: append([]string{"aggregator", "--phase", "2", "--data", t.TempDir()}, brokers...)},
		{job: "alerter", metric: "mercury_alerter_", args: append([]string{"alerter", "--data", t.TempDir()}, brokers...)},
		{job: "query", metric: "mercury_query_", args: append([]string{"query", "--data", t.TempDir()}, brokers...)},
		{job: "otlp", metric: "mercury_otlp_", args: append([]string{"otlp", "--grpc", "off"}, brokers...)},
		{job: "ship", metric: "mercury_shipper_", args: append([]string{"ship", "--spool", t.TempDir()}, brokers...)},
		{job: "gateway", metric: "mercury_gateway_", addr: gwAdmin,
			args: []string{"gateway", "--config", gwConf, "--spool", t.TempDir()}},
	}
	targets := map[string]string{}
	for i := range daemons {
		d := &daemons[i]
		if d.addr == "" {
			d.addr = testproc.FreeAddr(t)
			d.args = append(d.args, "--http", d.addr)
		}
		targets[d.job] = d.addr
	}
	prom := promtest.Start(t, targets) // first: it skips the test without Prometheus
	for _, d := range daemons {
		daemonProcess(t, d.args...)
	}
	// value is q's first result, or why there is none.
	value := func(q string) string {
		r, err := prom.Query(q)
		if err != nil {
			return err.Error()
		}
		if len(r) == 0 {
			return "no result"
		}
		v, _ := r[0].Value[1].(string)
		return v
	}
	for _, d := range daemons {
		testproc.Eventually(t, "Prometheus scraping "+d.job, 60*time.Second, func() (bool, string) {
			if up := value(fmt.Sprintf(`up{job=%q}`, d.job)); up != "1" {
				return false, "up=" + up
			}
			v := value(fmt.Sprintf(`count({__name__=~%q, job=%q})`, d.metric+".+", d.job))
			_, err := strconv.Atoi(v)
			return err == nil && v != "0", d.metric + "*: " + v
		})
	}
}
