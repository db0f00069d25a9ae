package broker

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mercury-apm/mercury/bus"
)

// janitor works around a gap in kfake's consumer groups: a member whose connection died
// while it waited in JoinGroup never gets a session timer (kfake starts one only when the
// join reply is delivered), so it stays in the group with its partitions and nobody
// consumes them (a daemon SIGKILLed a second after it started does this). The janitor
// notes when each member last sent a group request and, once one has been silent for its
// session plus rebalance timeout, sends a LeaveGroup for it: the rest rebalance, as Kafka's
// own session expiry would have made them. A live member is never that silent: it
// heartbeats every few seconds and a join waits at most the rebalance timeout.
type janitor struct {
	addr string
	log  *slog.Logger

	mu   sync.Mutex
	seen map[groupMember]memberSeen
}

type groupMember struct{ group, member string }

type memberSeen struct {
	last  time.Time
	limit time.Duration // silence after which the member is gone
}

// defaultSilence is the limit for a member seen before its JoinGroup (a broker restarted
// under a running group): Kafka's default session plus rebalance timeout is longer.
const defaultSilence = 45 * time.Second

func newJanitor(c *kfake.Cluster, addr string, log *slog.Logger) *janitor {
	j := &janitor{addr: addr, log: log, seen: map[groupMember]memberSeen{}}
	// Not handling the request (false) lets kfake serve it and keeps the function installed.
	c.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		j.observe(req, time.Now())
		return nil, nil, false
	})
	return j
}

// observe runs on kfake's request loop for every request: it only records, and locks only
// for the group requests it looks at.
func (j *janitor) observe(req kmsg.Request, now time.Time) {
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		limit := time.Duration(r.SessionTimeoutMillis) * time.Millisecond
		if r.Version >= 1 {
			limit += time.Duration(r.RebalanceTimeoutMillis) * time.Millisecond
		}
		j.touch(r.Group, r.MemberID, limit, now)
	case *kmsg.SyncGroupRequest:
		j.touch(r.Group, r.MemberID, 0, now)
	case *kmsg.HeartbeatRequest:
		j.touch(r.Group, r.MemberID, 0, now)
	case *kmsg.OffsetCommitRequest:
		j.touch(r.Group, r.MemberID, 0, now)
	case *kmsg.LeaveGroupRequest:
		j.mu.Lock()
		delete(j.seen, groupMember{r.Group, r.MemberID})
		for _, m := range r.Members {
			delete(j.seen, groupMember{r.Group, m.MemberID})
		}
		j.mu.Unlock()
	}
}

// touch notes a request of member; limit 0 keeps the limit its JoinGroup set.
func (j *janitor) touch(group, member string, limit time.Duration, now time.Time) {
	if member == "" {
		return // kfake expires members still without an id itself
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	k := groupMember{group, member}
	if limit == 0 {
		limit = defaultSilence
		if s, ok := j.seen[k]; ok {
			limit = s.limit
		}
	}
	j.seen[k] = memberSeen{last: now, limit: limit}
}

// silent removes and returns the members silent past their limit.
func (j *janitor) silent(now time.Time) []groupMember {
	j.mu.Lock()
	defer j.mu.Unlock()
	var gone []groupMember
	for k, s := range j.seen {
		if now.Sub(s.last) > s.limit {
			gone = append(gone, k)
			delete(j.seen, k)
		}
	}
	return gone
}

// run sweeps every second until ctx ends.
func (j *janitor) run(ctx context.Context) {
	cfg := bus.Config{Brokers: []string{j.addr}, ClientID: "mercury-broker"}
	cl, err := cfg.Client()
	if err != nil {
		j.log.Error("broker: group janitor", "err", err)
		return
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, m := range j.silent(now) {
				// UNKNOWN_MEMBER_ID (it left or expired meanwhile) is as good as success.
				_, err := cl.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: m.group, Members: []kafka.LeaveGroupRequestMember{{ID: m.member}}})
				j.log.Info("broker: removed a group member that went silent", "group", m.group, "member", m.member, "err", err)
			}
		}
	}
}
