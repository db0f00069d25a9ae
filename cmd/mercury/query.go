package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/query"
)

func runQuery(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	sf := registerStoreFlags(fs, "data")
	httpAddr := fs.String("http", "127.0.0.1:8080", "address of the API and web UI")
	token := fs.String("admin-token", os.Getenv("MERCURY_ADMIN_TOKEN"), "bearer token for admin endpoints (default $MERCURY_ADMIN_TOKEN; empty disables them)")
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
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d, err := query.NewDaemon(cfg, query.Config{Store: store, AdminToken: *token}, filepath.Join(sf.data, "agent-config.json"))
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.RunHeartbeats(ctx); err != nil {
			cancel(fmt.Errorf("heartbeats %w: %w", errFailed, err))
		}
	}()
	_, stop, err := serve(ctx, "query", *httpAddr, d.Handler(), cancel)
	if err != nil {
		cancel(nil)
		<-done
		return err
	}
	<-ctx.Done()
	stop()
	<-done
	return failure(ctx)
}
