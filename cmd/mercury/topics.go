package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/mercury-apm/mercury/bus"
)

// topicsFlags: create Mercury's topics on a cluster before the daemons start (a one-shot job:
// a cluster with auto-creation off, or on with its own default partition count, would
// otherwise leave the consumers too few partitions to scale on). Existing topics are kept.
func topicsFlags(fs *flag.FlagSet) func(context.Context) error {
	bf := bus.RegisterFlags(fs, "127.0.0.1:9092")
	parts := fs.String("partitions", "", "comma-separated topic=count overrides of the default partition counts, e.g. mercury.spans=12 (see docs/deploy.md)")
	return func(ctx context.Context) error {
		bc, err := bf.Config()
		if err != nil {
			return err
		}
		counts, err := parseTopicPartitions(*parts)
		if err != nil {
			return err
		}
		if err := bus.EnsureTopics(ctx, bc, counts); err != nil {
			return err
		}
		for _, t := range bus.Topics {
			n := bus.DefaultPartitions(t)
			if c, ok := counts[t]; ok {
				n = c
			}
			slog.Info("topics: present", "topic", t, "partitions_if_created", n)
		}
		return nil
	}
}

// parseTopicPartitions reads topic=count pairs; only Mercury's topics may be named.
func parseTopicPartitions(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, f := range list(s) {
		topic, n, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--partitions: %q is not topic=count", f)
		}
		if !slices.Contains(bus.Topics, topic) {
			return nil, fmt.Errorf("--partitions: %q is not a Mercury topic (%s)", topic, strings.Join(bus.Topics, ", "))
		}
		c, err := strconv.Atoi(n)
		if err != nil || c < 1 {
			return nil, fmt.Errorf("--partitions: %s: %q is not a partition count", topic, n)
		}
		out[topic] = c
	}
	return out, nil
}
