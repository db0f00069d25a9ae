package query

import (
	"context"
	"fmt"
	"log/slog"
	"os"

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

// Daemon is the query service as `mercury query` and `mercury up` run it: the API, with its
// agents registry fed from mercury.heartbeats.
type Daemon struct {
	*Server
	heartbeats *kafka.Reader
}

// NewDaemon opens the agent configuration at configPath (cfg.AgentConfigs and cfg.Agents are
// set here) and a heartbeats reader in a group of this host's own: every query instance must
// see every heartbeat. Call RunHeartbeats.
func NewDaemon(bc bus.Config, cfg Config, configPath string) (*Daemon, error) {
	configs, err := OpenAgentConfigs(configPath)
	if err != nil {
		return nil, err
	}
	cfg.AgentConfigs, cfg.Agents = configs, NewAgents(10000)
	srv, err := New(cfg)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	r, err := bus.NewReader(bc, bus.ReaderConfig{Topic: bus.TopicHeartbeats, GroupID: "query-agents-" + host})
	if err != nil {
		return nil, err
	}
	return &Daemon{Server: srv, heartbeats: r}, nil
}

// RunHeartbeats feeds the agents registry until ctx ends (then it returns nil) or the
// consumer fails, and closes the reader.
func (d *Daemon) RunHeartbeats(ctx context.Context) error {
	defer d.heartbeats.Close()
	if err := FollowHeartbeats(ctx, d.heartbeats, d.cfg.Agents, d.cfg.Logger); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
