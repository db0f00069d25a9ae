package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/query"
	"github.com/mercury-apm/mercury/storage"
)

func runQuery(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	sf := registerStoreFlags(fs, "data")
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of the API and web UI")
	token := fs.String("admin-token", os.Getenv("MERCURY_ADMIN_TOKEN"), "bearer token for admin endpoints (default $MERCURY_ADMIN_TOKEN; empty disables them)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bc, err := bf.Config()
	if err != nil {
		return err
	}
	stores, err := storage.Open(ctx, sf.config(0))
	if err != nil {
		return err
	}
	defer stores.Close()
	tel := daemon.NewTelemetry(slog.Default())
	q, err := query.New(query.Config{Telemetry: tel, Bus: bc, Traces: stores.Traces, AdminToken: *token,
		AgentConfigPath: filepath.Join(sf.data, "agent-config.json")})
	if err != nil {
		return err
	}
	ln, err := daemon.Listen(*httpAddr)
	if err != nil {
		return err
	}
	return daemon.Run(ctx, daemon.Options{Name: "query", Telemetry: tel, Listener: ln, Components: []daemon.Component{q}})
}
