package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/suite"
)

func runUp(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	cfg := suite.Config{}
	fs.StringVar(&cfg.DataDir, "data", "data", "data directory (broker, traces, agent config); a restart reuses it")
	fs.StringVar(&cfg.KafkaAddr, "kafka", "127.0.0.1:9092", "embedded broker address")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "query API and web UI address")
	fs.StringVar(&cfg.AdminToken, "admin-token", os.Getenv("MERCURY_ADMIN_TOKEN"), "admin bearer token (default $MERCURY_ADMIN_TOKEN; empty: a random one is printed)")
	fs.DurationVar(&cfg.Retention, "retention", 7*24*time.Hour, "keep traces this long; older days are dropped")
	fs.BoolVar(&cfg.Demo, "demo", false, "run three instrumented demo services (api → order → payment) with traffic")
	fs.DurationVar(&cfg.DemoEvery, "demo-every", 250*time.Millisecond, "time between demo requests")
	spools := fs.String("spool", "", "comma-separated extra agent spool directories to ship")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *spools != "" {
		cfg.Spools = strings.Split(*spools, ",")
	}
	if cfg.AdminToken == "" {
		b := make([]byte, 16)
		rand.Read(b)
		cfg.AdminToken = hex.EncodeToString(b)
	}
	s, err := suite.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf(`
Mercury is up (data in %s).
  web UI and API   %s
  Kafka broker     %s   (topics mercury.*)
  admin token      %s
`, cfg.DataDir, s.QueryURL(), s.KafkaAddr(), cfg.AdminToken)
	if cfg.Demo {
		fmt.Printf(`  demo             api → order → payment at %s, one order every %s (ids from %d)

Try, in another terminal:
  go run ./cmd/mercury search order_id=%d
  go run ./cmd/mercury trace <trace id from the search>
  open %s/?bk=order_id:%d
`, s.Demo().APIURL(), cfg.DemoEvery, s.Demo().NextOrderID(), s.Demo().NextOrderID()+2, s.QueryURL(), s.Demo().NextOrderID()+2)
	}
	fmt.Println("\nCtrl-C stops everything cleanly.")
	return s.Wait(ctx)
}
