package agents

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
)

// Follower feeds a registry from mercury.heartbeats. Every query instance must see every
// heartbeat, so each reads in a group of its own host.
type Follower struct {
	consumer *bus.Consumer
	registry *Registry
	log      *slog.Logger
}

// NewFollower joins the heartbeats group of this host.
func NewFollower(bc bus.Config, r *Registry, log *slog.Logger) (*Follower, error) {
	host, _ := os.Hostname()
	c, err := bus.NewConsumer(bc, bus.ConsumerConfig{Topic: bus.TopicHeartbeats, Group: "query-agents-" + host, Logger: log})
	if err != nil {
		return nil, err
	}
	return &Follower{consumer: c, registry: r, log: log}, nil
}

// Run follows until ctx ends. Undecodable records are skipped (they only describe agents;
// nothing is lost by ignoring one).
func (f *Follower) Run(ctx context.Context) error {
	return f.consumer.Run(ctx, func(_ context.Context, b bus.Batch) error {
		for _, m := range b.Messages {
			var hb schemas.Heartbeat
			if err := schemas.Unmarshal(m.Value, &hb); err != nil {
				f.log.Warn("query: skipping undecodable heartbeat", "partition", m.Partition, "offset", m.Offset, "err", fmt.Sprint(err))
				continue
			}
			f.registry.Observe(&hb)
		}
		return nil
	})
}

// Err is the consumer's last failure.
func (f *Follower) Err() error { return f.consumer.Err() }
