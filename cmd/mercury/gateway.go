package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/gateway"
	"github.com/mercury-apm/mercury/internal/daemon"
)

// agentCloseTimeout bounds the final flush of the gateway's spans to the spool.
const agentCloseTimeout = 10 * time.Second

// gatewayFlags: the resilience gateway, traced by its own agent: every request a span, every
// breaker/limiter/degrade transition an event, written to --spool for `mercury ship`. The
// proxy listens on the config's listen address, the admin API (with /metrics, /healthz,
// /readyz) on its admin_listen.
func gatewayFlags(fs *flag.FlagSet) func(context.Context) error {
	configPath := fs.String("config", "gateway.yaml", "gateway configuration (YAML; see gateway/testdata/gateway.yaml)")
	spoolDir := fs.String("spool", "gateway-spool", "agent spool directory the shipper reads")
	service := fs.String("service", "gateway", "service name on the gateway's spans and events")
	configURL := fs.String("agent-config-url", "", "query service's agent-config endpoint (sample rate, switches); empty: trace everything")
	watch := fs.Duration("watch", 5*time.Second, "how often to check --config for changes and reload it; 0: only on SIGHUP")
	return func(ctx context.Context) error {
		// Config first: a typo must not leave a spool directory and an agent behind.
		cfg, err := gateway.LoadConfig(*configPath)
		if err != nil {
			return err
		}
		a, err := agent.Start(agent.Config{Service: *service, SpoolDir: *spoolDir, ConfigURL: *configURL,
			Logger: log.New(os.Stderr, "mercury gateway: agent: ", log.LstdFlags)})
		if err != nil {
			return err
		}
		cfg.Observer = gateway.NewAgentObserver(a)
		g, err := gateway.New(cfg)
		if err == nil {
			err = runGatewayDaemon(ctx, g, cfg.AdminListen, *configPath, *watch)
		}
		// Run drains in-flight requests before it returns, so their spans are queued by the
		// time the agent closes here.
		cctx, cancel := context.WithTimeout(context.Background(), agentCloseTimeout)
		defer cancel()
		return errors.Join(err, a.Close(cctx))
	}
}

func runGatewayDaemon(ctx context.Context, g *gateway.Gateway, adminAddr, configPath string, watch time.Duration) error {
	ln, err := daemon.Listen(adminAddr)
	if err != nil {
		return err
	}
	tel := daemon.Telemetry{Logger: slog.Default(), Registry: g.Registry()}
	return daemon.Run(ctx, daemon.Options{Name: "gateway", Telemetry: tel, Listener: ln,
		Components: []daemon.Component{g, daemon.Task(func(ctx context.Context) error { return reloadConfig(ctx, g, configPath, watch) })}})
}

// reloadConfig reloads the config file on SIGHUP and, with watch > 0, when its content
// changes, until ctx ends. A bad file is logged and the running config kept.
func reloadConfig(ctx context.Context, g *gateway.Gateway, path string, watch time.Duration) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{})
	if watch > 0 {
		go func() { defer close(done); g.WatchConfig(ctx, path, watch) }()
	} else {
		close(done)
	}
	defer func() { <-done }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			if err := g.ReloadFile(path); err != nil {
				slog.Warn("mercury gateway: reload on SIGHUP failed; keeping the running config", "path", path, "err", err)
			}
		}
	}
}
