package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/gateway"
)

// agentCloseTimeout bounds the final flush of the gateway's spans to the spool.
const agentCloseTimeout = 10 * time.Second

// runGateway serves the resilience gateway until ctx ends, traced by its own
// agent: every request a span, every breaker/limiter/degrade transition an
// event, written to --spool for `mercury ship`.
func runGateway(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	configPath := fs.String("config", "gateway.yaml", "gateway configuration (YAML; see gateway/testdata/gateway.yaml)")
	spoolDir := fs.String("spool", "gateway-spool", "agent spool directory the shipper reads")
	service := fs.String("service", "gateway", "service name on the gateway's spans and events")
	configURL := fs.String("agent-config-url", "", "query service's agent-config endpoint (sample rate, switches); empty: trace everything")
	watch := fs.Duration("watch", 5*time.Second, "how often to check --config for changes and reload it; 0: only on SIGHUP")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
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
		stopReloads := reloadConfig(ctx, g, *configPath, *watch)
		// Run drains in-flight requests before it returns, so their spans
		// are queued by the time the agent closes below.
		err = g.Run(ctx)
		stopReloads()
	}
	cctx, cancel := context.WithTimeout(context.Background(), agentCloseTimeout)
	defer cancel()
	return errors.Join(err, a.Close(cctx))
}

// reloadConfig reloads the config file on SIGHUP and, with watch > 0, when
// its content changes. A bad file is logged and the running config kept.
// The returned function stops both and waits for them.
func reloadConfig(ctx context.Context, g *gateway.Gateway, path string, watch time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := g.ReloadFile(path); err != nil {
					slog.Warn("mercury gateway: reload on SIGHUP failed; keeping the running config", "path", path, "err", err)
				}
			}
		}
	})
	if watch > 0 {
		wg.Go(func() { g.WatchConfig(ctx, path, watch) })
	}
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}
