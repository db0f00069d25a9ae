package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/aggregator"
	"github.com/mercury-apm/mercury/aggregator/phase1"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/storage"
)

func aggregatorFlags(fs *flag.FlagSet) func(context.Context) error {
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	data := fs.String("data", "data", "phase 2: data directory of the embedded metric store (used when --hbase is not set)")
	hbase := fs.String("hbase", "", "phase 2: HBase REST gateway URL for the metric store (tables mercury:metrics, mercury:metric_series)")
	phase := fs.Int("phase", 0, "1: mercury.spans → mercury.metrics.20s; 2: partials → minute points in the metric store and mercury.metrics.1m")
	httpAddr := fs.String("http", "", "address for /metrics, /healthz and /readyz (default 127.0.0.1:9467 for phase 1, :9468 for phase 2)")
	parts := fs.String("partitions", "", "comma-separated input partitions this instance owns (default all; instances of one phase must own disjoint sets)")
	window := fs.Duration("window", 20*time.Second, "phase 1: event-time window")
	lateness := fs.Duration("lateness", 30*time.Minute, "phase 1: spans later than this behind their partition's newest are dropped and counted")
	maxFuture := fs.Duration("max-future", time.Hour, "phase 1: spans starting further ahead of this host's clock are dropped and counted")
	maxSeries := fs.Int("max-series", 1000, "phase 1: series per service per flush before the rest count as __other__")
	seriesPerDay := fs.Int("series-per-day", 5000, "phase 2: series a service may store per day (all partitions together) before the rest count as __other__")
	flush := fs.Duration("flush", 0, "how long records wait in memory (default 2 s for phase 1, 1 s for phase 2)")
	retention := fs.Duration("retention", 30*24*time.Hour, "phase 2: keep minute points this long")
	return func(ctx context.Context) error {
		if *phase != 1 && *phase != 2 {
			return errors.New("--phase 1 or --phase 2 is required")
		}
		bc, err := bf.Config()
		if err != nil {
			return err
		}
		owned, err := parsePartitions(*parts)
		if err != nil {
			return err
		}
		tel := daemon.NewTelemetry(slog.Default())
		cfg := aggregator.Config{Telemetry: tel, Phase: *phase, Bus: bc, Partitions: owned, FlushInterval: *flush, MaxSeries: *seriesPerDay,
			Fold: phase1.Config{Window: *window, Lateness: *lateness, MaxFuture: *maxFuture, MaxSeriesPerService: *maxSeries}}
		var components []daemon.Component
		if *phase == 2 {
			store, err := storage.OpenMetrics(ctx, storage.Config{DataDir: *data, HBaseURL: *hbase})
			if err != nil {
				return err
			}
			defer store.Close()
			cfg.Store = store
			components = append(components, daemon.Task(func(ctx context.Context) error { return storage.Keep(ctx, tel.Logger, store, *retention) }))
		}
		a, err := aggregator.New(cfg)
		if err != nil {
			return err
		}
		addr := *httpAddr
		if addr == "" {
			addr = fmt.Sprintf("127.0.0.1:%d", 9466+*phase)
		}
		ln, err := daemon.Listen(addr)
		if err != nil {
			return err
		}
		return daemon.Run(ctx, daemon.Options{Name: fmt.Sprintf("aggregator phase %d", *phase), Telemetry: tel, Listener: ln,
			Components: append(components, a)})
	}
}

func parsePartitions(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("--partitions: %q is not a partition number", f)
		}
		out = append(out, p)
	}
	return out, nil
}
