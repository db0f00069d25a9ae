package allinone_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/allinone"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/internal/promtest"
)

// A real Prometheus (Debian package prometheus) scrapes `mercury up`'s /metrics, where every
// in-process daemon registers, and answers for Mercury's metric names.
func TestRealPrometheusScrapes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := start(ctx, allinone.Config{DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OTLPHTTPAddr: "off", OTLPGRPCAddr: "off",
		Telemetry: daemon.Telemetry{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); s.Wait() }()
	prom := promtest.Start(t, map[string]string{"mercury-up": strings.TrimPrefix(s.QueryURL(), "http://")})
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range []string{"up", "mercury_collector_spans_total", "mercury_query_undecodable_rows_total", "go_goroutines"} {
		for {
			r, err := prom.Query(name)
			if len(r) > 0 && (name != "up" || r[0].Value[1] == "1") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus never answered for %s (%v, %+v)", name, err, r)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
