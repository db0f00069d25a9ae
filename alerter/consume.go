package alerter

import (
	"context"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/retry"
)

// batchHandler is one consumer's processing. The consumer calls it from one goroutine at a
// time (batches, assignments and ticks are serialised by consume).
type batchHandler interface {
	// handle processes one message; an error marked retry.Permanent dead-letters it, any
	// other fails the batch, which the consumer retries (handle must skip what a failed
	// try already did: the partition's state is dropped and reloaded, see drop).
	handle(ctx context.Context, m kafka.Message) error
	// flush makes a partition's batch durable (its state included) before its commit.
	flush(ctx context.Context, partition int) error
	// tick does time-driven work (windows ending, services going quiet) about every second.
	tick(ctx context.Context) error
	// assigned and revoked follow the group: state kept per partition is loaded on
	// assignment and dropped on revocation (what a revoked partition did was flushed with
	// each batch, before its commit).
	assigned(ctx context.Context, parts []bus.Assignment) error
	revoked(parts []int)
}

// consume runs h on topic as group until ctx ends: fetch a batch of one partition, handle its
// messages, flush, and only then let the consumer commit, so the state saved by flush is
// never behind the committed offset.
func (a *Alerter) consume(ctx context.Context, topic, group string, h batchHandler) error {
	dlq, err := bus.NewWriter(a.cfg.Bus, bus.WriterConfig{})
	if err != nil {
		return err
	}
	defer bus.CloseWriter(dlq)
	var mu sync.Mutex
	c, err := bus.NewConsumer(a.cfg.Bus, bus.ConsumerConfig{Topic: topic, Group: group, MaxWait: a.cfg.BatchWait,
		DLQ: dlq, Logger: a.cfg.Logger, Backoff: retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second},
		Assigned: func(ctx context.Context, parts []bus.Assignment) error {
			mu.Lock()
			defer mu.Unlock()
			return h.assigned(ctx, parts)
		},
		Revoked: func(parts []int) {
			mu.Lock()
			defer mu.Unlock()
			h.revoked(parts)
		}})
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.consumers = append(a.consumers, c)
	a.mu.Unlock()
	tctx, stopTicks := context.WithCancel(ctx)
	defer stopTicks()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-tctx.Done():
				return
			case <-t.C:
			}
			mu.Lock()
			err := h.tick(tctx)
			mu.Unlock()
			if err != nil && tctx.Err() == nil {
				a.cfg.Logger.Warn("alerter: "+topic+" tick", "err", err)
			}
		}
	}()
	return c.Run(ctx, func(ctx context.Context, b bus.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b.Messages {
			err := h.handle(ctx, m)
			if err == nil {
				continue
			}
			if !retry.IsPermanent(err) {
				h.revoked([]int{b.Partition}) // retried from the saved state
				return err
			}
			a.undecodable.Inc()
			if err := c.DeadLetter(ctx, m, err); err != nil {
				h.revoked([]int{b.Partition})
				return err
			}
		}
		if err := h.flush(ctx, b.Partition); err != nil {
			h.revoked([]int{b.Partition})
			return err
		}
		return nil
	})
}
