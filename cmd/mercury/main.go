// Command mercury runs Mercury's daemons and tools, one subcommand each. Flags are parsed here;
// the work is done by the packages' embeddable New/Run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

type command struct {
	run   func(ctx context.Context, args []string) error
	usage string
}

var commands = map[string]command{
	"up":         {daemonCommand("up", upFlags), "up [--demo] [--data DIR]                   the whole pipeline in one process on embedded defaults"},
	"broker":     {daemonCommand("broker", brokerFlags), "broker [--data DIR] [--addr HOST:PORT]     embedded single-machine Kafka-protocol broker"},
	"ship":       {daemonCommand("ship", shipFlags), "ship --spool DIR --brokers HOST:PORT       ship the agent's spool to Kafka"},
	"collector":  {daemonCommand("collector", collectorFlags), "collector [--es URL --hbase URL]           mercury.spans → trace stores"},
	"aggregator": {daemonCommand("aggregator", aggregatorFlags), "aggregator --phase 1|2 [--hbase URL]       spans → 20 s partials → 1 min points (metric store)"},
	"alerter":    {daemonCommand("alerter", alerterFlags), "alerter [--hbase URL] [--webhook URL --alertmanager URL] events and metric rules → alerts, notifications"},
	"query":      {daemonCommand("query", queryFlags), "query [--http ADDR]                        trace search API, agents, agent config, web UI"},
	"otlp":       {daemonCommand("otlp", otlpFlags), "otlp [--http ADDR] [--grpc ADDR]           OTLP/HTTP and OTLP/gRPC trace ingest → mercury.spans"},
	"gateway":    {daemonCommand("gateway", gatewayFlags), "gateway --config FILE [--spool DIR]        resilience gateway, traced by its own agent"},
	"demo":       {daemonCommand("demo", demoFlags), "demo [--spool DIR] [--api ADDR]            the demo services and traffic, spools for `mercury ship`"},
	"topics":     {daemonCommand("topics", topicsFlags), "topics [--partitions TOPIC=N,...]          create Mercury's topics on the cluster (existing ones kept)"},
	"audit":      {runAudit, "audit --from T [--to T] [--json]           per service and minute: spans reported, shipped, stored, aggregated"},
	"search":     {runSearch, "search key=value ... [--service S]         find traces by business key"},
	"trace":      {runTrace, "trace TRACE_ID                             print a trace's call tree"},
	"dlq":        {runDLQ, "dlq replay [--dry-run] [--follow]           produce dead letters back to their topics"},
	"spool":      {runSpool, "spool cat DIR                              print spool records as JSON lines"},
	"config":     {runConfig, "config check FILE | config defaults        check a configuration file; print every key with its default"},
	"version":    {runVersion, "version                                    print the version"},
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stdout) // asked for: not an error
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "mercury: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "mercury %s: %v\n", os.Args[1], err)
		stop()
		os.Exit(1)
	}
}

// daemonCommand is a daemon's subcommand: flags declares its flags on a set and returns
// what runs it once they are parsed, so the same declaration serves the command line, the
// configuration file (--config-file, applied under the command line) and `mercury config`.
func daemonCommand(name string, flags func(fs *flag.FlagSet) func(context.Context) error) func(context.Context, []string) error {
	newSet := func() (*flag.FlagSet, func(context.Context) error) {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		registerConfigFlag(fs)
		return fs, flags(fs)
	}
	flagSets[name] = func() *flag.FlagSet { fs, _ := newSet(); return fs }
	return func(ctx context.Context, args []string) error {
		fs, run := newSet()
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if err := withConfigFile(fs); err != nil {
			return err
		}
		return run(ctx)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mercury COMMAND [flags]\n\ncommands:")
	for _, n := range slices.Sorted(maps.Keys(commands)) {
		fmt.Fprintf(w, "  %s\n", commands[n].usage)
	}
	fmt.Fprintln(w, "\nFlags may stand before or after the arguments. Run 'mercury COMMAND -h' for a command's flags.")
}

func runVersion(context.Context, []string) error {
	fmt.Println("mercury", version)
	return nil
}

const version = "0.1.0"
