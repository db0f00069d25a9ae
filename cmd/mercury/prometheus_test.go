package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A real Prometheus (Debian package prometheus) scrapes every daemon of a distributed
// Mercury, each its own `mercury` process, and finds each one up with its own metrics.
func TestRealPrometheusScrapesEveryDaemon(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus binary not found (Debian package prometheus); skipping the scrape test")
	}
	kafka := freeAddr(t)
	brokers := []string{"--brokers", kafka}
	gwConf := filepath.Join(t.TempDir(), "gateway.yaml")
	gwAdmin := freeAddr(t)
	if err := os.WriteFile(gwConf, fmt.Appendf(nil, "listen: %q\nadmin_listen: %q\nstate_file: %q\nroutes:\n  - name: api\n    prefix: /\n    service: api\n    tier: 1\n    local:\n      instances: [\"http://127.0.0.1:1\"]\n",
		freeAddr(t), gwAdmin, filepath.Join(t.TempDir(), "state.json")), 0o644); err != nil {
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
	var scrape strings.Builder
	scrape.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n")
	for i := range daemons {
		d := &daemons[i]
		if d.addr == "" {
			d.addr = freeAddr(t)
			d.args = append(d.args, "--http", d.addr)
		}
		daemonProcess(t, d.args...)
		fmt.Fprintf(&scrape, "  - job_name: %s\n    static_configs:\n      - targets: [%q]\n", d.job, d.addr)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(scrape.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	query := func(q string) (int, string) {
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return 0, err.Error()
		}
		if len(r.Data.Result) == 0 {
			return 0, "no result"
		}
		v, _ := r.Data.Result[0].Value[1].(string)
		return len(r.Data.Result), v
	}
	for _, d := range daemons {
		eventually(t, "Prometheus scraping "+d.job, 60*time.Second, func() (bool, string) {
			n, up := query(fmt.Sprintf(`up{job=%q}`, d.job))
			if n != 1 || up != "1" {
				return false, "up=" + up
			}
			_, v := query(fmt.Sprintf(`count({__name__=~%q, job=%q})`, d.metric+".+", d.job))
			return v != "" && v != "0" && v != "no result", d.metric + "*: " + v
		})
	}
}
