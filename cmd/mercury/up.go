package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/allinone"
)

func upFlags(fs *flag.FlagSet) func(context.Context) error {
	cfg := allinone.Config{}
	fs.StringVar(&cfg.DataDir, "data", "data", "data directory (broker, traces, agent config); a restart reuses it")
	fs.StringVar(&cfg.KafkaAddr, "kafka", "127.0.0.1:9092", "embedded broker address")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "query API and web UI address")
	fs.StringVar(&cfg.OTLPHTTPAddr, "otlp-http", "127.0.0.1:4318", `OTLP/HTTP trace ingest address ("off": none; move it when another collector holds the port)`)
	fs.StringVar(&cfg.OTLPGRPCAddr, "otlp-grpc", "127.0.0.1:4317", `OTLP/gRPC trace ingest address ("off": none; move it when another collector holds the port)`)
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "admin bearer token (empty: $MERCURY_ADMIN_TOKEN; both empty: a random one is printed)")
	fs.DurationVar(&cfg.Retention, "retention", 7*24*time.Hour, "keep traces this long; older days are dropped")
	fs.DurationVar(&cfg.MetricRetention, "metric-retention", 30*24*time.Hour, "keep minute points this long")
	fs.BoolVar(&cfg.Demo, "demo", false, "run three instrumented demo services (api → order → payment) with traffic")
	fs.DurationVar(&cfg.DemoEvery, "demo-every", 250*time.Millisecond, "time between demo requests")
	spools := fs.String("spool", "", "comma-separated extra agent spool directories to ship")
	return func(ctx context.Context) error {
		if *spools != "" {
			cfg.Spools = strings.Split(*spools, ",")
		}
		if cfg.AdminToken == "" {
			b := make([]byte, 16)
			rand.Read(b)
			cfg.AdminToken = hex.EncodeToString(b)
		}
		cfg.Logger = slog.Default()
		p, err := allinone.New(ctx, cfg)
		if err != nil {
			return err
		}
		dataDir, _ := filepath.Abs(cfg.DataDir)
		fmt.Printf(`
Mercury is up (data under %s).
  web UI and API   %s
  Kafka broker     %s   (topics mercury.*)
  OTLP/HTTP        %s   OTLP/gRPC %s
  admin token      %s
`, dataDir, p.QueryURL(), p.KafkaAddr(), orOff(p.OTLPHTTPURL()), orOff(p.OTLPGRPCAddr()), cfg.AdminToken)
		if d := p.Demo(); d != nil {
			next := d.NextOrderID()
			fmt.Printf(`  demo             api → order → payment at %s, one order every %s (ids from %d)

Try, in another terminal:
  go run ./cmd/mercury search order_id=%d
  go run ./cmd/mercury trace <trace id from the search>
  open %s/?bk=order_id:%d
  curl '%s/api/v1/metrics?service=order&metric=p99'     (minute points, from the 2nd minute on)
  curl %s/api/v1/topology                            (api → order → payment, orders-db)
  curl '%s/api/v1/alerts?state=firing'               (payment failures alert at once)
  curl "%s/api/v1/audit?from=$(( $(date +%%s) - 600 ))000&to=$(( $(date +%%s) - 60 ))000"
                                                     (per minute: spans reported, shipped, stored, aggregated)
`, d.APIURL(), cfg.DemoEvery, next, next+2, p.QueryURL(), next+2, p.QueryURL(), p.QueryURL(), p.QueryURL(), p.QueryURL())
		}
		fmt.Println("\nCtrl-C stops everything cleanly.")
		return p.Run(ctx)
	}
}

func orOff(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}
