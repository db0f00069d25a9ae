package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/collector"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/storage"
)

func collectorFlags(fs *flag.FlagSet) func(context.Context) error {
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	sf := registerStoreFlags(fs, "data")
	httpAddr := fs.String("http", "127.0.0.1:9466", "address for /metrics, /healthz and /readyz")
	batch := fs.Int("batch", 1000, "spans per store write")
	wait := fs.Duration("batch-wait", 100*time.Millisecond, "how long a partial batch waits for more spans")
	retention := fs.Duration("retention", 7*24*time.Hour, "keep traces this long (embedded store and Elasticsearch; HBase expires by its column TTL); older spans are dead-lettered")
	return func(ctx context.Context) error {
		bc, err := bf.Config()
		if err != nil {
			return err
		}
		stores, err := storage.Open(ctx, sf.config(*retention))
		if err != nil {
			return err
		}
		defer stores.Close()
		tel := daemon.NewTelemetry(slog.Default())
		c, err := collector.New(collector.Config{Telemetry: tel, Bus: bc, Store: stores.Traces, BatchSize: *batch, BatchWait: *wait, MaxAge: *retention})
		if err != nil {
			return err
		}
		ln, err := daemon.Listen(*httpAddr)
		if err != nil {
			return err
		}
		return daemon.Run(ctx, daemon.Options{Name: "collector", Telemetry: tel, Listener: ln,
			Components: []daemon.Component{c, daemon.Task(func(ctx context.Context) error { return stores.RunRetention(ctx, tel.Logger) })}})
	}
}
