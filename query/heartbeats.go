package query

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
)

// FollowHeartbeats feeds the registry from mercury.heartbeats until ctx ends. Undecodable
// records are skipped (they only describe agents; nothing is lost by ignoring one).
func FollowHeartbeats(ctx context.Context, r bus.Fetcher, agents *Agents, log *slog.Logger) error {
	return bus.Consume(ctx, bus.LoopConfig{
		Reader: r,
		Logger: log,
		Handle: func(_ context.Context, m kafka.Message) error {
			var hb schemas.Heartbeat
			if err := schemas.Unmarshal(m.Value, &hb); err != nil {
				log.Warn("query: skipping undecodable heartbeat", "partition", m.Partition, "offset", m.Offset, "err", fmt.Sprint(err))
				return nil
			}
			agents.Observe(&hb)
			return nil
		},
	})
}
