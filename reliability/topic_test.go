package reliability

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
)

// readTopic passes every record of topic, partition by partition in offset order, to fn.
func readTopic(ctx context.Context, cfg bus.Config, topic string, fn func(partition int, value []byte) error) error {
	cl, err := cfg.Client()
	if err != nil {
		return err
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	var reqs []kafka.OffsetRequest
	for _, t := range md.Topics {
		if t.Error != nil {
			return t.Error
		}
		for _, p := range t.Partitions {
			reqs = append(reqs, kafka.LastOffsetOf(p.ID))
		}
	}
	ends, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return err
	}
	d, err := cfg.Dialer()
	if err != nil {
		return err
	}
	for _, e := range ends.Topics[topic] {
		if e.Error != nil {
			return e.Error
		}
		if e.LastOffset == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: topic, Partition: e.Partition, Dialer: d,
			MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
		err := func() error {
			defer r.Close()
			for next := int64(0); next < e.LastOffset; {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return fmt.Errorf("%s[%d] at %d: %w", topic, e.Partition, next, err)
				}
				if m.Offset != next {
					return fmt.Errorf("%s[%d]: offset %d after %d (nothing is deleted in the drill)", topic, e.Partition, m.Offset, next-1)
				}
				next++
				if err := fn(e.Partition, m.Value); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return nil
}
