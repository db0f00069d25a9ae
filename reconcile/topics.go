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
// or after to (or the end of the partition as it is now).
func readTopic(ctx context.Context, bc bus.Config, topic string, from, to time.Time, fn func(value []byte)) error {
	cl, err := bc.Client()
	if err != nil {
		return err
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return fmt.Errorf("reconcile: %s: metadata: %w", topic, err)
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("reconcile: %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	ends, err := listOffsets(ctx, cl, topic, parts, func(p int) kafka.OffsetRequest { return kafka.LastOffsetOf(p) })
	if err != nil {
		return err
	}
	// Asked apart from the end offsets: kafka-go files a time lookup that found nothing
	// (timestamp -1) under the last offset.
	starts, err := listOffsets(ctx, cl, topic, parts, func(p int) kafka.OffsetRequest { return kafka.TimeOffsetOf(p, from) })
	if err != nil {
		return err
	}
	stops, err := listOffsets(ctx, cl, topic, parts, func(p int) kafka.OffsetRequest { return kafka.TimeOffsetOf(p, to) })
	if err != nil {
		return err
	}
	for _, p := range parts {
		end := ends[p].LastOffset
		start, ok := timeOffset(ends[p], starts[p])
		if !ok {
			continue // nothing shipped since from
		}
		stop, ok := timeOffset(ends[p], stops[p])
		if !ok {
			stop = end
		}
		if err := readPartition(ctx, cl, topic, p, start, stop, fn); err != nil {
			return err
		}
	}
	return nil
}

func listOffsets(ctx context.Context, cl *kafka.Client, topic string, parts []int, req func(int) kafka.OffsetRequest) (map[int]kafka.PartitionOffsets, error) {
	reqs := make([]kafka.OffsetRequest, len(parts))
	for i, p := range parts {
		reqs[i] = req(p)
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

// timeOffset is the offset a time lookup found, capped at the end; false when no record is
// that recent.
func timeOffset(end, found kafka.PartitionOffsets) (int64, bool) {
	for off := range found.Offsets {
		if off >= 0 {
			return min(off, end.LastOffset), true
		}
	}
	return 0, false
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
func countHeartbeats(ctx context.Context, bc bus.Config, from, to time.Time, fromSec, toSec int64, row func(string, int64) *counts) (map[string]bool, int64, error) {
	type beatKey struct {
		host, service     string
		pid               int32
		started, unixNano int64
	}
	seen := map[beatKey]bool{}
	reporting := map[string]bool{}
	var undecodable int64
	err := readTopic(ctx, bc, bus.TopicHeartbeats, from, to, func(value []byte) {
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
	return reporting, undecodable, err
}
