package alerter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
)

// batchHandler is one consumer's processing: handle each message in partition order, then
// flush what the batch changed before its offsets are committed.
type batchHandler interface {
	// handle processes m; an error wrapped by bus.Permanent sends m to mercury.dlq, any
	// other stops the consumer (store writes are retried inside handle).
	handle(ctx context.Context, m kafka.Message) error
	// flush makes the batch's effects durable (partition state included); it also runs when
	// the topic is quiet, for time-driven work.
	flush(ctx context.Context) error
}

// fetcher is the part of *kafka.Reader the loop uses.
type fetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

// consume runs fetch → handle → flush → commit on topic as group until ctx ends. A batch
// ends when no message is waiting, after FlushInterval, or at 1,000 messages; its offsets
// are committed only after flush, so the partition state saved by flush is never behind
// the committed offset.
func (a *Alerter) consume(ctx context.Context, topic, group string, h batchHandler) error {
	r, err := bus.NewReader(a.cfg.Bus, bus.ReaderConfig{Topic: topic, GroupID: group, MaxWait: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	dlq, err := bus.NewWriter(a.cfg.Bus, bus.WriterConfig{})
	if err != nil {
		r.Close()
		return err
	}
	defer dlq.Close()
	return a.loop(ctx, r, dlq, h)
}

func (a *Alerter) loop(ctx context.Context, r fetcher, dlq bus.MessageWriter, h batchHandler) error {
	defer r.Close()
	pending := map[int]kafka.Message{}
	var batchStart time.Time
	n := 0
	commit := func(ctx context.Context) error {
		if err := h.flush(ctx); err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		msgs := make([]kafka.Message, 0, len(pending))
		for _, m := range pending {
			msgs = append(msgs, m)
		}
		if err := r.CommitMessages(ctx, msgs...); err != nil {
			// Not fatal: the saved partition state is ahead of the commit, so a new owner
			// skips what this batch already did.
			a.cfg.Logger.Warn("alerter: commit failed, will retry", "err", err)
			return nil
		}
		clear(pending)
		return nil
	}
	for {
		wait := time.Second
		if len(pending) > 0 {
			wait = 20 * time.Millisecond
		}
		fctx, cancel := context.WithTimeout(ctx, wait)
		m, err := r.FetchMessage(fctx)
		cancel()
		if ctx.Err() != nil {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := commit(fctx); err != nil {
				a.cfg.Logger.Warn("alerter: final flush failed; the next owner replays from the saved state", "err", err)
			}
			return nil
		}
		idle := false
		switch {
		case err == nil:
			if herr := h.handle(ctx, m); herr != nil {
				if !bus.IsPermanent(herr) {
					if ctx.Err() != nil {
						continue
					}
					return herr
				}
				a.undecodable.Inc()
				a.cfg.Logger.Warn("alerter: record to dead-letter", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", herr)
				if derr := a.retry(ctx, func() error { return bus.SendDLQ(ctx, dlq, m, herr) }); derr != nil {
					if ctx.Err() != nil {
						continue
					}
					return derr
				}
			}
			pending[m.Partition] = m
			if n == 0 {
				batchStart = time.Now()
			}
			n++
		case errors.Is(err, context.DeadlineExceeded):
			idle = true
		default:
			return fmt.Errorf("alerter: fetch: %w", err)
		}
		if idle || n >= 1000 || (n > 0 && time.Since(batchStart) >= a.cfg.FlushInterval) {
			if err := commit(ctx); err != nil {
				if ctx.Err() != nil {
					continue
				}
				return err
			}
			n = 0
		}
	}
}
