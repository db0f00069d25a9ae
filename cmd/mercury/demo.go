package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/mercury-apm/mercury/demo"
	"github.com/mercury-apm/mercury/internal/daemon"
)

// demoFlags: the demo services (api → order → payment) and their traffic as a process of
// their own, each service's agent writing a spool under --spool for `mercury ship` sidecars,
// as a real service would run.
func demoFlags(fs *flag.FlagSet) func(context.Context) error {
	cfg := demo.Config{}
	fs.StringVar(&cfg.SpoolRoot, "spool", "demo-spool", "spool root: one spool directory per service (api, order, payment) for `mercury ship --spool`")
	fs.StringVar(&cfg.ConfigURL, "agent-config-url", "", "query service's agent-config endpoint (sample rate, switches); empty: trace everything")
	fs.StringVar(&cfg.APIAddr, "api", "127.0.0.1:0", "listen address of the api service (POST /orders/{id}), the one a gateway may front")
	fs.DurationVar(&cfg.Interval, "every", 250*time.Millisecond, "time between generated requests (negative: no traffic)")
	fs.Float64Var(&cfg.FailRate, "fail-rate", 0.05, "share of payments declined (exception events for the alerter)")
	httpAddr := fs.String("http", "127.0.0.1:9470", "address for /metrics, /healthz and /readyz")
	return func(ctx context.Context) error {
		tel := daemon.NewTelemetry(slog.Default())
		cfg.Logger = tel.Logger
		d, err := demo.New(ctx, cfg)
		if err != nil {
			return err
		}
		ln, err := daemon.Listen(*httpAddr)
		if err != nil {
			d.Close(ctx)
			return err
		}
		tel.Logger.Info("demo: services up", "api", d.APIURL(), "spool", cfg.SpoolRoot, "every", cfg.Interval)
		return daemon.Run(ctx, daemon.Options{Name: "demo", Telemetry: tel, Listener: ln, Components: []daemon.Component{d}})
	}
}
