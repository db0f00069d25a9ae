package alerter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// selfWatch raises alerts about Mercury itself, like any other alert: agents dropping
// records, shippers falling behind, services that stopped sending heartbeats, and consumer
// groups lagging on their topics.
// Heartbeats are keyed by service, so a service's agents are watched by the owner of its
// partition; consumer lag by the owner of partition 0.
type selfWatch struct {
	a        *Alerter
	agents   map[string]agentSeen // service/host/pid → last heartbeat
	services map[string]serviceSeen
	owned    map[int]bool
	lastLag  time.Time
}

type agentSeen struct {
	partition int
	drops     int64
}

type serviceSeen struct {
	partition int
	domain    string
	last      time.Time // newest heartbeat time of any of its agents
}

func newSelfWatch(a *Alerter) *selfWatch {
	return &selfWatch{a: a, agents: map[string]agentSeen{}, services: map[string]serviceSeen{}, owned: map[int]bool{}}
}

func (s *selfWatch) assigned(_ context.Context, parts []bus.Assignment) error {
	for _, p := range parts {
		s.owned[p.Partition] = true
	}
	return nil
}

// revoked forgets the partitions' agents and services: their new owner watches them (and
// learns them from the heartbeats it replays), so this instance raises nothing about them.
func (s *selfWatch) revoked(parts []int) {
	for _, p := range parts {
		delete(s.owned, p)
		for k, v := range s.agents {
			if v.partition == p {
				delete(s.agents, k)
			}
		}
		for k, v := range s.services {
			if v.partition == p {
				delete(s.services, k)
			}
		}
	}
}

// Decisions are stored as they are made.
func (s *selfWatch) flush(context.Context, int) error { return nil }

func drops(stats map[string]int64) int64 {
	var n int64
	for k, v := range stats {
		if strings.HasPrefix(k, "dropped_") || k == "shipper_dropped_records" {
			n += v
		}
	}
	return n
}

func (s *selfWatch) handle(ctx context.Context, m kafka.Message) error {
	var hb schemas.Heartbeat
	if err := schemas.Unmarshal(m.Value, &hb); err != nil {
		return retry.Permanent(fmt.Errorf("decode heartbeat: %w", err))
	}
	s.a.selfChecks.Inc()
	at := time.Unix(0, hb.TimeUnixNano)
	id := fmt.Sprintf("%s/%s/%d", hb.Service, hb.Host, hb.PID)
	prev, seen := s.agents[id]
	d := drops(hb.Stats)
	s.agents[id] = agentSeen{partition: m.Partition, drops: d}
	tmpl := alertstore.Alert{Kind: alertstore.KindSelf, Domain: hb.Domain, Service: hb.Service,
		Labels: map[string]string{"host": hb.Host, "pid": fmt.Sprint(hb.PID), "agent_version": hb.AgentVersion}}
	if seen {
		level := ""
		if d > prev.drops {
			level = alertstore.LevelWarning
		}
		if err := s.check(ctx, "agent_drops", "self/agent_drops/"+hb.Service+"/"+hb.Host, level, at, float64(d-prev.drops), 0,
			fmt.Sprintf("%s on %s: agent dropped %d record(s) since its last heartbeat", hb.Service, hb.Host, d-prev.drops), tmpl); err != nil {
			return err
		}
	}
	lag, ok := hb.Stats["shipper_lag_bytes"]
	if !ok {
		lag = hb.Stats["spool_bytes"]
	}
	level := ""
	if lag > s.a.cfg.SpoolBytes {
		level = alertstore.LevelWarning
	}
	if err := s.check(ctx, "shipper_lag", "self/shipper_lag/"+hb.Service+"/"+hb.Host, level, at, float64(lag), float64(s.a.cfg.SpoolBytes),
		fmt.Sprintf("%s on %s: %d bytes not shipped yet (limit %d)", hb.Service, hb.Host, lag, s.a.cfg.SpoolBytes), tmpl); err != nil {
		return err
	}
	sv := s.services[hb.Service]
	if at.After(sv.last) {
		sv.last, sv.domain, sv.partition = at, hb.Domain, m.Partition
		s.services[hb.Service] = sv
	}
	return s.check(ctx, "stopped_reporting", "self/stopped/"+hb.Service, "", at, 0, 0,
		fmt.Sprintf("%s reports again", hb.Service), tmpl)
}

// check moves a self-check's alert; the default receivers hear it.
func (s *selfWatch) check(ctx context.Context, rule, key, level string, at time.Time, value, threshold float64, summary string, tmpl alertstore.Alert) error {
	tmpl.Rule = rule
	return s.a.transition(ctx, state{key: key, level: level, asOf: at.UnixNano(), value: value, threshold: threshold,
		summary: summary, startsAt: at, template: tmpl,
		receivers: func(string) []string { return s.a.cfg.DefaultReceivers }})
}

// tick raises "stopped reporting" for services whose newest heartbeat is older than
// StoppedAfter, and samples consumer lag every LagInterval.
func (s *selfWatch) tick(ctx context.Context) error {
	now := s.a.cfg.Now()
	names := make([]string, 0, len(s.services))
	for name := range s.services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		sv := s.services[name]
		if now.Sub(sv.last) < s.a.cfg.StoppedAfter {
			continue
		}
		tmpl := alertstore.Alert{Kind: alertstore.KindSelf, Domain: sv.domain, Service: name}
		if err := s.check(ctx, "stopped_reporting", "self/stopped/"+name, alertstore.LevelAlarm, sv.last.Add(s.a.cfg.StoppedAfter),
			now.Sub(sv.last).Seconds(), s.a.cfg.StoppedAfter.Seconds(),
			fmt.Sprintf("%s stopped reporting: no heartbeat since %s", name, sv.last.UTC().Format(time.RFC3339)), tmpl); err != nil {
			return err
		}
	}
	if !s.owned[0] || now.Sub(s.lastLag) < s.a.cfg.LagInterval {
		return nil
	}
	s.lastLag = now
	for group, topic := range s.a.cfg.LagGroups {
		lag, err := ConsumerLag(ctx, s.a.cfg.Bus, group, topic)
		if errors.Is(err, errNoGroup) {
			continue // not running here
		}
		if err != nil {
			s.a.cfg.Logger.Warn("alerter: consumer lag", "group", group, "err", err)
			continue
		}
		level := ""
		if lag > s.a.cfg.MaxLag {
			level = alertstore.LevelWarning
		}
		tmpl := alertstore.Alert{Kind: alertstore.KindSelf, Service: "mercury", Labels: map[string]string{"group": group, "topic": topic}}
		if err := s.check(ctx, "consumer_lag", "self/consumer_lag/"+group, level, now, float64(lag), float64(s.a.cfg.MaxLag),
			fmt.Sprintf("consumer group %s is %d message(s) behind on %s (limit %d)", group, lag, topic, s.a.cfg.MaxLag), tmpl); err != nil {
			return err
		}
	}
	return nil
}

var errNoGroup = errors.New("no such consumer group")

// ConsumerLag is how many messages of topic group has not committed, over all partitions.
func ConsumerLag(ctx context.Context, cfg bus.Config, group, topic string) (int64, error) {
	cl, err := cfg.Client()
	if err != nil {
		return 0, err
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, t := range md.Topics {
		if t.Error != nil {
			return 0, t.Error
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	committed, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err == nil {
		err = committed.Error
	}
	if errors.Is(err, kafka.GroupIdNotFound) {
		return 0, errNoGroup
	}
	if err != nil {
		return 0, err
	}
	pos := map[int]int64{}
	any := false
	for _, p := range committed.Topics[topic] {
		if p.Error == nil && p.CommittedOffset >= 0 {
			pos[p.Partition] = p.CommittedOffset
			any = true
		}
	}
	if !any {
		return 0, errNoGroup // nothing committed: the group never ran against this topic
	}
	offs, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, err
	}
	var lag int64
	for _, p := range offs.Topics[topic] {
		if p.Error != nil {
			return 0, p.Error
		}
		lag += max(0, p.LastOffset-max(pos[p.Partition], p.FirstOffset))
	}
	return lag, nil
}
