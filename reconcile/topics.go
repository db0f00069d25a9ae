package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
)

// readTopic calls fn with the value of every record of topic whose Kafka timestamp is in
// [from, to), partition by partition: from the first offset at or after from to the first at
// or after to (or the end of the partition as it is now). It warns about partitions whose
// retention removed records that may have been shipped after from.
func readTopic(ctx context.Context, bc bus.Config, topic string, from, to time.Time, fn func(value []byte)) (warnings []string, err error) {
	cl, err := bc.Client()
	if err != nil {
		return nil, err
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("reconcile: %s: metadata: %w", topic, err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("reconcile: %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	bounds, err := listOffsets(ctx, cl, topic, parts, func(p int) []kafka.OffsetRequest {
		return []kafka.OffsetRequest{kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p)}
	})
	if err != nil {
		return nil, err
	}
	// Asked apart from the bounds: kafka-go files a time lookup that found nothing
	// (timestamp -1) under the last offset.
	starts, err := listOffsets(ctx, cl, topic, parts, func(p int) []kafka.OffsetRequest { return []kafka.OffsetRequest{kafka.TimeOffsetOf(p, from)} })
	if err != nil {
		return nil, err
	}
	stops, err := listOffsets(ctx, cl, topic, parts, func(p int) []kafka.OffsetRequest { return []kafka.OffsetRequest{kafka.TimeOffsetOf(p, to)} })
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		b := bounds[p]
		start, at, ok := timeOffset(b, starts[p])
		if !ok {
			continue // nothing shipped since from
		}
		if w := trimmed(topic, p, b.FirstOffset, start, at, from); w != "" {
			warnings = append(warnings, w)
		}
		stop, _, ok := timeOffset(b, stops[p])
		if !ok {
			stop = b.LastOffset
		}
		if err := readPartition(ctx, cl, topic, p, start, stop, fn); err != nil {
			return warnings, err
		}
	}
	return warnings, nil
}

// trimmed warns when the read of a partition starts at its first offset, records before it
// are gone (retention), and the first one left was shipped after the window opened: the
// removed ones may have been shipped in the window.
func trimmed(topic string, partition int, first, start int64, startTime, from time.Time) string {
	if start != first || first == 0 || !startTime.After(from) {
		return ""
	}
	return fmt.Sprintf("%s partition %d: retention removed its records before %s, after the audit's window opens (%s): records shipped in between are not counted",
		topic, partition, startTime.UTC().Format(time.RFC3339), from.UTC().Format(time.RFC3339))
}

func listOffsets(ctx context.Context, cl *kafka.Client, topic string, parts []int, req func(int) []kafka.OffsetRequest) (map[int]kafka.PartitionOffsets, error) {
	var reqs []kafka.OffsetRequest
	for _, p := range parts {
		reqs = append(reqs, req(p)...)
	}
	res, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("reconcile: %s: list offsets: %w", topic, err)
	}
	out := map[int]kafka.PartitionOffsets{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("reconcile: %s partition %d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p
	}
	return out, nil
}

// timeOffset is the offset a time lookup found, capped at the end, and the timestamp of its
// record; false when no record is that recent.
func timeOffset(bounds, found kafka.PartitionOffsets) (int64, time.Time, bool) {
	for off, at := range found.Offsets {
		if off >= 0 {
			return min(off, bounds.LastOffset), at, true
		}
	}
	return 0, time.Time{}, false
}

// readPartition reads offsets [start, stop) of one partition.
func readPartition(ctx context.Context, cl *kafka.Client, topic string, partition int, start, stop int64, fn func([]byte)) error {
	for off := start; off < stop; {
		res, err := cl.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: off, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 100 * time.Millisecond})
		if err == nil {
			err = res.Error
		}
		if err != nil {
			return fmt.Errorf("reconcile: %s partition %d at %d: %w", topic, partition, off, err)
		}
		before := off
		for {
			rec, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("reconcile: %s partition %d at %d: %w", topic, partition, off, err)
			}
			if rec.Offset < off { // a batch starting before the offset asked for
				continue
			}
			if rec.Offset >= stop {
				break
			}
			var value []byte
			if rec.Value != nil {
				value, err = io.ReadAll(rec.Value)
				if err != nil {
					return fmt.Errorf("reconcile: %s partition %d at %d: %w", topic, partition, rec.Offset, err)
				}
			}
			fn(value)
			off = rec.Offset + 1
		}
		if off == before {
			if res.HighWatermark <= off {
				return nil // the partition ends sooner than it said (trimmed meanwhile)
			}
			off++ // a gap (compaction, a transaction marker)
		}
	}
	return nil
}

// countHeartbeats adds the per-minute deltas of heartbeats shipped in [from, to) to the rows
// of minutes in [fromSec, toSec). A heartbeat shipped twice counts once. It returns the
// services whose heartbeats carry per-minute counts at all, and how many records did not
// decode.
func countHeartbeats(ctx context.Context, bc bus.Config, from, to time.Time, fromSec, toSec int64, row func(string, int64) *counts) (map[string]bool, int64, []string, error) {
	type beatKey struct {
		host, service     string
		pid               int32
		started, unixNano int64
	}
	seen := map[beatKey]bool{}
	reporting := map[string]bool{}
	var undecodable int64
	warnings, err := readTopic(ctx, bc, bus.TopicHeartbeats, from, to, func(value []byte) {
		var hb schemas.Heartbeat
		if err := schemas.Unmarshal(value, &hb); err != nil {
			undecodable++
			return
		}
		k := beatKey{hb.Host, hb.Service, hb.PID, hb.StartedUnixNano, hb.TimeUnixNano}
		if seen[k] {
			return
		}
		seen[k] = true
		for name, n := range hb.Stats {
			if name == schemas.StatMinuteOverflow {
				reporting[hb.Service] = true
				continue
			}
			m, ok := strings.CutPrefix(name, schemas.StatMinutePrefix)
			if !ok {
				continue
			}
			reporting[hb.Service] = true
			sec, err := strconv.ParseInt(m, 10, 64)
			if err != nil || sec < fromSec || sec >= toSec {
				continue
			}
			row(hb.Service, sec).reported += n
		}
	})
	return reporting, undecodable, warnings, err
}
