package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
)

// runDLQ: mercury dlq replay [flags] produces dead letters back to their topics.
func runDLQ(ctx context.Context, args []string) error { return dlqCommand(ctx, os.Stdout, args) }

func dlqCommand(ctx context.Context, out io.Writer, args []string) error {
	if len(args) == 0 || args[0] != "replay" {
		return errors.New("usage: mercury dlq replay [--brokers B] [--dry-run] [--follow] [--group G]")
	}
	fs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	rc := bus.ReplayConfig{}
	fs.StringVar(&rc.Group, "group", "dlq-replay", "consumer group keeping the replay's position (a rerun replays only newer dead letters)")
	fs.BoolVar(&rc.DryRun, "dry-run", false, "list what would be replayed; produce and commit nothing")
	fs.BoolVar(&rc.Follow, "follow", false, "keep replaying new dead letters until interrupted")
	fs.IntVar(&rc.MaxReplays, "max-replays", 3, "skip records already replayed this often")
	quiet := fs.Bool("quiet", false, "print only the summary")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := bf.Config()
	if err != nil {
		return err
	}
	if !*quiet {
		rc.Report = func(m kafka.Message, to string, skipped error) { printDeadLetter(out, m, to, skipped) }
	}
	st, err := bus.Replay(ctx, cfg, rc)
	verb := "replayed"
	if rc.DryRun {
		verb = "would replay"
	}
	fmt.Fprintf(out, "%s %d, skipped %d\n", verb, st.Replayed, st.Skipped)
	if errors.Is(err, context.Canceled) {
		return nil // interrupted (--follow): progress up to here is committed
	}
	return err
}

// printDeadLetter prints one line per dead letter: where it is, where it goes, why it failed.
func printDeadLetter(w io.Writer, m kafka.Message, to string, skipped error) {
	why, _ := bus.Header(m, bus.HeaderDLQError)
	from, _ := bus.Header(m, bus.HeaderDLQTopic)
	dest := "→ " + to
	if skipped != nil {
		dest = "skipped: " + skipped.Error()
	}
	fmt.Fprintf(w, "%s/%d@%d from %q %s (failed: %s)\n", bus.TopicDLQ, m.Partition, m.Offset, from, dest, why)
}
