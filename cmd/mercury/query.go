package main

import (
	"cmp"
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/query"
	"github.com/mercury-apm/mercury/query/alerts"
	"github.com/mercury-apm/mercury/storage"
)

func queryFlags(fs *flag.FlagSet) func(context.Context) error {
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	sf := registerStoreFlags(fs, "data")
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of the API and web UI")
	token := fs.String("admin-token", "", "bearer token for admin endpoints (empty: $MERCURY_ADMIN_TOKEN; both empty disables them)")
	return func(ctx context.Context) error {
		*token = cmp.Or(*token, os.Getenv(adminTokenEnv))
		bc, err := bf.Config()
		if err != nil {
			return err
		}
		stores, ms, closeStores, err := sf.openForReading(ctx)
		if err != nil {
			return err
		}
		defer closeStores()
		tel := daemon.NewTelemetry(slog.Default())
		qc := query.Config{Telemetry: tel, Bus: bc, Traces: stores.Traces, Metrics: ms, AdminToken: *token,
			AgentConfigPath: filepath.Join(sf.data, "agent-config.json")}
		if sf.hbase != "" {
			// The alert board: the alerter writes the store in HBase (`mercury alerter --hbase`).
			// An embedded one belongs to the alerter's process and cannot be shared.
			alertStore, err := storage.OpenAlerts(ctx, storage.Config{HBaseURL: sf.hbase})
			if err != nil {
				return err
			}
			defer alertStore.Close()
			board, err := alerts.New(alerts.Config{Store: alertStore})
			if err != nil {
				return err
			}
			qc.Rooms, qc.Alerts = append(qc.Rooms, board), board
		}
		q, err := query.New(qc)
		if err != nil {
			return err
		}
		ln, err := daemon.Listen(*httpAddr)
		if err != nil {
			return err
		}
		return daemon.Run(ctx, daemon.Options{Name: "query", Telemetry: tel, Listener: ln, Components: []daemon.Component{q}})
	}
}
