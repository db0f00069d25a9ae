package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
)

// brokerFlags: the embedded single-machine Kafka-protocol broker, which runs until ctx ends,
// then persists its state. Real Kafka is the scale-out path: every daemon takes --brokers.
func brokerFlags(fs *flag.FlagSet) func(context.Context) error {
	data := fs.String("data", "mercury-data/broker", "directory for topics, records and group offsets (empty: memory only)")
	addr := fs.String("addr", "127.0.0.1:9092", "listen address (also the address advertised to clients)")
	spans := fs.Int("spans-partitions", bus.DefaultPartitions(bus.TopicSpans), "partitions of "+bus.TopicSpans+" when first created")
	syncWrites := fs.Bool("sync", false, "fsync every produced batch (survives power loss; slower)")
	httpAddr := fs.String("http", "127.0.0.1:9464", "address for /metrics, /healthz and /readyz")
	return func(ctx context.Context) error {
		tel := daemon.NewTelemetry(slog.Default())
		b, err := broker.New(ctx, broker.Config{
			DataDir: *data, Addr: *addr, SyncWrites: *syncWrites, Logger: tel.Logger,
			Partitions: map[string]int{bus.TopicSpans: *spans},
		})
		if err != nil {
			return err
		}
		ln, err := daemon.Listen(*httpAddr)
		if err != nil {
			b.Close()
			return err
		}
		tel.Logger.Info("broker: listening", "addr", b.Addr(), "data", *data, "topics", bus.Topics)
		return daemon.Run(ctx, daemon.Options{Name: "broker", Telemetry: tel, Listener: ln, Components: []daemon.Component{b}})
	}
}
