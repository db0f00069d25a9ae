package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/query"
	"github.com/mercury-apm/mercury/tracestore"
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
	_, stop, err := startQuery(ctx, cfg, store, filepath.Join(sf.data, "agent-config.json"), *token, *httpAddr, cancel)
	if err != nil {
		return err
	}
	defer stop()
	<-ctx.Done()
	return failure(ctx)
}

// startQuery serves the API and follows heartbeats into its agents registry.
func startQuery(ctx context.Context, cfg bus.Config, store *tracestore.Store, configPath, token, addr string, fail context.CancelCauseFunc) (string, func(), error) {
	configs, err := query.OpenAgentConfigs(configPath)
	if err != nil {
		return "", nil, err
	}
	agents := query.NewAgents(10000)
	srv, err := query.New(query.Config{Store: store, Agents: agents, AgentConfigs: configs, AdminToken: token})
	if err != nil {
		return "", nil, err
	}
	host, _ := os.Hostname()
	// One group per host: every query instance must see every heartbeat.
	r, err := bus.NewReader(cfg, bus.ReaderConfig{Topic: bus.TopicHeartbeats, GroupID: "query-agents-" + host})
	if err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.Close()
		if err := query.FollowHeartbeats(ctx, r, agents, slog.Default()); err != nil && ctx.Err() == nil {
			fail(err)
		}
	}()
	bound, stopHTTP, err := serve(ctx, "query", addr, srv.Handler(), fail)
	if err != nil {
		return "", nil, err
	}
	return bound, func() { stopHTTP(); <-done }, nil
}
