package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/collector"
	"github.com/mercury-apm/mercury/tracestore"
)

func runCollector(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	sf := registerStoreFlags(fs, "data")
	httpAddr := fs.String("http", "127.0.0.1:9466", "address for /metrics, /healthz and /readyz")
	batch := fs.Int("batch", 1000, "spans per store write")
	wait := fs.Duration("batch-wait", 100*time.Millisecond, "how long a partial batch waits for more spans")
	retention := fs.Duration("retention", 7*24*time.Hour, "keep traces this long (embedded store and Elasticsearch; HBase expires by its column TTL); older spans are dead-lettered")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := bf.Config()
	if err != nil {
		return err
	}
	store, closer, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer closer.Close()
	c, err := collector.NewOnBus(cfg, collector.Config{Store: store, BatchSize: *batch, BatchWait: *wait, MaxAge: *retention, Registry: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if r, ok := store.Index.(tracestore.Retention); ok {
		go tracestore.KeepFor(ctx, r, *retention, time.Hour, slog.Default())
	}
	_, stop, err := serve(ctx, "collector", *httpAddr, c.Handler(), cancel)
	if err != nil {
		return err
	}
	defer stop()
	slog.Info("collector: consuming", "topic", bus.TopicSpans, "brokers", cfg.Brokers)
	if err := c.Run(ctx); err != nil {
		return err
	}
	return failure(ctx)
}
