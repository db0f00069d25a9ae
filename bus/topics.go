package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// EnsureTopics creates the given topics (all Mercury topics when none are given) that do not
// exist yet. partitions overrides DefaultPartitions per topic. It is idempotent: an existing
// topic keeps its partition count.
func EnsureTopics(ctx context.Context, cfg Config, partitions map[string]int, topics ...string) error {
	if len(topics) == 0 {
		topics = Topics
	}
	cl, err := cfg.Client()
	if err != nil {
		return err
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		n := DefaultPartitions(t)
		if p, ok := partitions[t]; ok && p > 0 {
			n = p
		}
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: n, ReplicationFactor: -1})
	}
	resp, err := cl.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("bus: create topics: %w", err)
	}
	for t, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("bus: create topic %s: %w", t, terr)
		}
	}
	return nil
}
