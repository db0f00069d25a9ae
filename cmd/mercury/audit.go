package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/reconcile"
)

// runAudit: mercury audit --from T [--to T] reconciles the pipeline's stages per service and
// minute; it fails when any minute lost spans.
func runAudit(ctx context.Context, args []string) error { return auditCommand(ctx, os.Stdout, args) }

func auditCommand(ctx context.Context, out io.Writer, args []string) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	sf := registerStoreFlags(fs, "data")
	from := fs.String("from", "", "start of the range: RFC 3339, Unix milliseconds, or a negative duration from now (-2h); widened to the minute")
	to := fs.String("to", "", "end of the range (exclusive), same forms; default now")
	var cfg reconcile.Config
	fs.DurationVar(&cfg.Skew, "skew", 5*time.Minute, "read the topics from this long before --from (clock skew between hosts and Kafka timestamps)")
	fs.DurationVar(&cfg.Lateness, "lateness", 30*time.Minute, "count spans and heartbeats shipped up to this long after --to")
	asJSON := fs.Bool("json", false, "print the report as JSON (the query API's /api/v1/audit shape)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	now := time.Now()
	if *from == "" {
		return fmt.Errorf("usage: mercury audit --from T [--to T] [--brokers B] [--data DIR | --es URL [--hbase URL]] [--json]")
	}
	start, err := auditTime(*from, now)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	end := now
	if *to != "" {
		if end, err = auditTime(*to, now); err != nil {
			return fmt.Errorf("--to: %w", err)
		}
	}
	if _, _, err := reconcile.Align(start, end); err != nil {
		return err // before opening anything
	}
	if cfg.Bus, err = bf.Config(); err != nil {
		return err
	}
	stores, ms, closeStores, err := sf.openForReading(ctx)
	if err != nil {
		return err
	}
	defer closeStores()
	cfg.Traces, cfg.Metrics = stores.Traces.Index, ms
	rep, err := reconcile.Run(ctx, cfg, start, end)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteTable(out)
	}
	if err != nil {
		return err
	}
	if rep.Missing > 0 {
		return fmt.Errorf("%d service-minute(s) lost spans", rep.Missing)
	}
	return nil
}

// auditTime reads RFC 3339, Unix milliseconds, or a negative duration before now.
func auditTime(s string, now time.Time) (time.Time, error) {
	if strings.HasPrefix(s, "-") && !strings.ContainsAny(s, "T:") {
		if d, err := time.ParseDuration(s); err == nil {
			return now.Add(d), nil
		}
	}
	return api.ParseTime(s)
}
