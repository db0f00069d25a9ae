package bus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Producer sends whole batches to one topic: the batch is split by partition (murmur2 of the
// key, like the Java client and bus.NewWriter), each partition's share goes out as one or more
// Produce requests of at most MaxRequestBytes with acks=all, all partitions in parallel.
//
// It exists for the shipper's hot path. kafka.Writer looks the topic's metadata up once per
// message and copies every message into per-partition batches; with thousands of spans per
// call that was a measurable share of the shipper's CPU on a 2-core machine. The contract is
// the same as a synchronous kafka.Writer: nil, or kafka.WriteErrors with one entry per message.
type Producer struct {
	client      *kafka.Client
	transport   *kafka.Transport
	topic       string
	compression kafka.Compression
	maxBytes    int
	balancer    kafka.Murmur2Balancer

	mu      sync.Mutex
	parts   []int
	partsAt time.Time
}

// ProducerConfig tunes a Producer.
type ProducerConfig struct {
	Topic           string
	Compression     string
	MaxRequestBytes int           // per Produce request and partition; default 1 MiB (Kafka's message.max.bytes)
	Timeout         time.Duration // per request; default 30 s
}

// NewProducer builds a producer with its own transport.
func NewProducer(cfg Config, pc ProducerConfig) (*Producer, error) {
	t, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	comp, err := ParseCompression(pc.Compression)
	if err != nil {
		return nil, err
	}
	return &Producer{
		client:      &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: t, Timeout: orDur(pc.Timeout, 30*time.Second)},
		transport:   t,
		topic:       pc.Topic,
		compression: comp,
		maxBytes:    orInt(pc.MaxRequestBytes, 1<<20),
		balancer:    kafka.Murmur2Balancer{Consistent: true},
	}, nil
}

// Close closes the pooled connections.
func (p *Producer) Close() error {
	p.transport.CloseIdleConnections()
	return nil
}

// partitions returns the topic's partition ids, cached for a few seconds and dropped after
// any failure so that a leader change or a broker restart is noticed at once.
func (p *Producer) partitions(ctx context.Context) ([]int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.parts) > 0 && time.Since(p.partsAt) < 10*time.Second {
		return p.parts, nil
	}
	md, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{p.topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata %s: %w", p.topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != p.topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("metadata %s: %w", p.topic, t.Error)
		}
		parts := make([]int, len(t.Partitions))
		for i, tp := range t.Partitions {
			parts[i] = tp.ID
		}
		if len(parts) == 0 {
			break
		}
		slices.Sort(parts)
		p.parts, p.partsAt = parts, time.Now()
		return p.parts, nil
	}
	return nil, fmt.Errorf("metadata %s: %w", p.topic, kafka.UnknownTopicOrPartition)
}

func (p *Producer) forget() {
	p.mu.Lock()
	p.parts = nil
	p.mu.Unlock()
}

// WriteMessages produces msgs (their Topic and Partition are ignored) and waits for every
// acknowledgement.
func (p *Producer) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	parts, err := p.partitions(ctx)
	if err != nil {
		return err
	}
	byPart := make(map[int][]int32, len(parts))
	for i := range msgs {
		pt := p.balancer.Balance(msgs[i], parts...)
		byPart[pt] = append(byPart[pt], int32(i))
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		werrs  kafka.WriteErrors
		failed bool
	)
	for pt, idx := range byPart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Chunks of one partition go out in order; a failed chunk fails the rest of
			// the partition's share too (they were not sent).
			for len(idx) > 0 {
				n, size := 0, 0
				for n < len(idx) {
					m := &msgs[idx[n]]
					sz := len(m.Key) + len(m.Value) + 32 // record overhead, roughly
					if n > 0 && size+sz > p.maxBytes {
						break
					}
					size += sz
					n++
				}
				err := p.produce(ctx, pt, msgs, idx[:n])
				if err != nil {
					mu.Lock()
					if werrs == nil {
						werrs = make(kafka.WriteErrors, len(msgs))
					}
					for _, i := range idx {
						werrs[i] = err
					}
					failed = true
					mu.Unlock()
					return
				}
				idx = idx[n:]
			}
		}()
	}
	wg.Wait()
	if failed {
		p.forget()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return werrs
	}
	return nil
}

func (p *Producer) produce(ctx context.Context, partition int, msgs []kafka.Message, idx []int32) error {
	resp, err := p.client.Produce(ctx, &kafka.ProduceRequest{
		Topic:        p.topic,
		Partition:    partition,
		RequiredAcks: kafka.RequireAll,
		Compression:  p.compression,
		Records:      &indexedRecords{msgs: msgs, idx: idx, now: time.Now()},
	})
	if err != nil {
		return err
	}
	return resp.Error
}

// indexedRecords reads a subset of msgs as records without copying them.
type indexedRecords struct {
	msgs       []kafka.Message
	idx        []int32
	next       int
	now        time.Time // timestamp for messages without one (Kafka rejects year-1 timestamps)
	rec        kafka.Record
	key, value bytesReadCloser
}

func (r *indexedRecords) ReadRecord() (*kafka.Record, error) {
	if r.next >= len(r.idx) {
		return nil, io.EOF
	}
	m := &r.msgs[r.idx[r.next]]
	r.next++
	r.rec = kafka.Record{Time: m.Time, Headers: m.Headers}
	if r.rec.Time.IsZero() {
		r.rec.Time = r.now
	}
	if m.Key != nil {
		r.key.Reset(m.Key)
		r.rec.Key = &r.key
	}
	if m.Value != nil {
		r.value.Reset(m.Value)
		r.rec.Value = &r.value
	}
	return &r.rec, nil
}

type bytesReadCloser struct{ bytes.Reader }

func (*bytesReadCloser) Close() error { return nil }
