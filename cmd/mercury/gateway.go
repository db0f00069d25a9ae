package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"os"
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
	if err := parseFlags(fs, args); err != nil {
		return err
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
		// Run drains in-flight requests before it returns, so their spans
		// are queued by the time the agent closes below.
		err = g.Run(ctx)
	}
	cctx, cancel := context.WithTimeout(context.Background(), agentCloseTimeout)
	defer cancel()
	return errors.Join(err, a.Close(cctx))
}
