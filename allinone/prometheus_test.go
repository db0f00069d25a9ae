package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/allinone"
	"github.com/mercury-apm/mercury/internal/daemon"
)

// A real Prometheus (Debian package prometheus) scrapes `mercury up`'s /metrics, where every
// in-process daemon registers, and answers for Mercury's metric names.
func TestRealPrometheusScrapes(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus binary not found (Debian package prometheus); skipping the scrape test")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := start(ctx, allinone.Config{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OTLPHTTPAddr: "off", OTLPGRPCAddr: "off",
		Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); s.Wait() }()
	target := strings.TrimPrefix(s.QueryURL(), "http://")
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: mercury-up\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	base := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range []string{"up", "mercury_collector_spans_total", "mercury_query_undecodable_rows_total", "go_goroutines"} {
		for {
			var r struct {
				Status string `json:"status"`
				Data   struct {
					Result []struct {
						Metric map[string]string `json:"metric"`
						Value  [2]any            `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(name))
			if err == nil {
				json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
			}
			if len(r.Data.Result) > 0 && (name != "up" || r.Data.Result[0].Value[1] == "1") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus never answered for %s (%v, %+v)", name, err, r)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
