package aggregator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/internal/retry"
)

// checkpoint is a partition's position in its group, with phase 1's bookkeeping in the
// offset's commit metadata, where it is written atomically with the offset:
//
//	"p1 wm=<ns>"             done: offset is the next record, wm the partition's watermark
//	"p1 wm=<ns> intent=<L>"  a flush of [offset, L] is under way, wm is the watermark before it
//
// Phase 1 commits the intent before it emits a range's partials and the done mark after, so
// a restarted phase 1 finds either a finished range or exactly the range it must replay.
type checkpoint struct {
	offset int64 // next record; -1 when the group has never committed
	wm     int64
	intent int64 // last offset of the range being flushed; -1 when none
}

func (c checkpoint) metadata() string {
	s := "p1 wm=" + strconv.FormatInt(c.wm, 10)
	if c.intent >= 0 {
		s += " intent=" + strconv.FormatInt(c.intent, 10)
	}
	return s
}

// parseCheckpoint reads committed metadata. Empty metadata (phase 2, or a group written by
// another tool) is a plain position.
func parseCheckpoint(offset int64, meta string) (checkpoint, error) {
	c := checkpoint{offset: offset, intent: -1}
	if meta == "" {
		return c, nil
	}
	f := strings.Fields(meta)
	if len(f) < 2 || f[0] != "p1" || len(f) > 3 {
		return c, retry.Permanent(fmt.Errorf("aggregator: commit metadata %q is not a phase-1 checkpoint", meta))
	}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return c, retry.Permanent(fmt.Errorf("aggregator: commit metadata %q: %w", meta, err))
		}
		switch k {
		case "wm":
			c.wm = n
		case "intent":
			if n < offset {
				return c, retry.Permanent(fmt.Errorf("aggregator: commit metadata %q: intent before offset %d", meta, offset))
			}
			c.intent = n
		default:
			return c, retry.Permanent(fmt.Errorf("aggregator: commit metadata %q: unknown field %q", meta, k))
		}
	}
	return c, nil
}

// offsets commits and fetches a group's positions without joining the group: the
// aggregator owns its partitions by configuration, so a restart resumes at once instead of
// waiting out the dead member's session (and the commit can carry metadata).
type offsets struct {
	client *kafka.Client
	group  string
	topic  string
}

func (o *offsets) fetch(ctx context.Context, partition int) (checkpoint, error) {
	resp, err := o.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: o.group, Topics: map[string][]int{o.topic: {partition}}})
	if err == nil && resp.Error != nil && !errors.Is(resp.Error, kafka.GroupIdNotFound) {
		err = resp.Error
	}
	if err != nil {
		return checkpoint{}, fmt.Errorf("aggregator: fetch %s offsets of %s/%d: %w", o.group, o.topic, partition, err)
	}
	for _, p := range resp.Topics[o.topic] {
		if p.Partition != partition {
			continue
		}
		if p.Error != nil {
			return checkpoint{}, fmt.Errorf("aggregator: fetch %s offset of %s/%d: %w", o.group, o.topic, partition, p.Error)
		}
		return parseCheckpoint(p.CommittedOffset, p.Metadata)
	}
	return checkpoint{offset: -1, intent: -1}, nil
}

func (o *offsets) commit(ctx context.Context, partition int, offset int64, meta string) error {
	resp, err := o.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID: o.group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{o.topic: {{Partition: partition, Offset: offset, Metadata: meta}}},
	})
	if err != nil {
		return fmt.Errorf("aggregator: commit %s/%d@%d: %w", o.topic, partition, offset, err)
	}
	for _, p := range resp.Topics[o.topic] {
		if p.Error != nil {
			return fmt.Errorf("aggregator: commit %s/%d@%d: %w", o.topic, partition, offset, p.Error)
		}
	}
	return nil
}

// partitionsOf lists the topic's partitions.
func partitionsOf(ctx context.Context, cl *kafka.Client, topic string) ([]int, error) {
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("aggregator: metadata of %s: %w", topic, err)
	}
	var out []int
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("aggregator: metadata of %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			out = append(out, p.ID)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("aggregator: topic %s has no partitions", topic)
	}
	return out, nil
}
