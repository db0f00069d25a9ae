package main

import (
	"context"
	"flag"
	"log/slog"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/agent/ship"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
)

// shipFlags: the spool shipper as a sidecar, with /metrics, /healthz and its stats on --http.
func shipFlags(fs *flag.FlagSet) func(context.Context) error {
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	cfg := ship.Config{}
	fs.StringVar(&cfg.Spool, "spool", "", "the agent's spool directory (required)")
	fs.StringVar(&cfg.CursorDir, "cursor-dir", "", "where the durable cursors live (default <spool>/.ship)")
	streams := fs.String("streams", strings.Join(ship.Streams, ","), "streams to ship")
	fs.IntVar(&cfg.BatchRecords, "batch", 5000, "records per send")
	fs.Int64Var(&cfg.BatchBytes, "batch-bytes", 4<<20, "message bytes per send")
	fs.IntVar(&cfg.InFlight, "inflight", 2, "batches in flight per stream (committed in order; 1 keeps strict per-partition order)")
	fs.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", 1<<20, "larger records are dropped and counted; also the per-request size")
	fs.DurationVar(&cfg.Linger, "linger", 10*time.Millisecond, "wait this long for a batch to fill once the spool is drained")
	fs.Int64Var(&cfg.RateBytes, "rate-bytes", 0, "cap on produced bytes per second, for cross-DC links (0: unlimited)")
	fs.StringVar(&cfg.Compression, "compression", "none", "none, gzip, snappy, lz4 or zstd")
	httpAddr := fs.String("http", "127.0.0.1:9465", "address for /metrics, /healthz, /readyz and /api/v1/ship/stats (empty: off)")
	return func(ctx context.Context) error {
		var err error
		if cfg.Bus, err = bf.Config(); err != nil {
			return err
		}
		cfg.Streams = bus.ParseBrokers(*streams) // same comma-splitting rules
		tel := daemon.NewTelemetry(slog.Default())
		cfg.Logger = tel.Logger
		s, err := ship.New(cfg)
		if err != nil {
			return err
		}
		if err := tel.Register(s.Collector()); err != nil {
			return err
		}
		o := daemon.Options{Name: "ship", Telemetry: tel, Components: []daemon.Component{s}}
		if *httpAddr != "" {
			if o.Listener, err = daemon.Listen(*httpAddr); err != nil {
				return err
			}
		}
		return daemon.Run(ctx, o)
	}
}
