package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/internal/retry"
)

// Batch is a run of messages from one partition, in offset order: First is the offset of
// Messages[0], Last of the final one. Offsets may have gaps (compaction), never reordering.
type Batch struct {
	Topic     string
	Partition int
	First     int64
	Last      int64
	Messages  []kafka.Message
	// Lag is how many messages the partition held beyond Last when the batch was fetched.
	Lag int64
}

// Assignment is a partition given to this member and the offset it resumes from (the next
// to read: the group's committed offset, or kafka.FirstOffset/LastOffset when none is).
type Assignment struct {
	Partition int
	Offset    int64
}

// ConsumerConfig configures a batch consumer of one topic in one group.
type ConsumerConfig struct {
	Topic string
	Group string
	// MaxBatch bounds the messages in one batch (default 1000); MaxWait is how long a batch
	// waits for more once it has one (default 100 ms).
	MaxBatch int
	MaxWait  time.Duration
	// StartOffset for partitions without a committed offset: kafka.FirstOffset (default) or
	// kafka.LastOffset.
	StartOffset int64
	// Assigned is called when the member is given partitions, before any of their batches.
	// An error stops the consumer.
	Assigned func(ctx context.Context, parts []Assignment) error
	// Revoked is called when the member loses its partitions (a rebalance or shutdown),
	// after the last batch it handled was committed or abandoned: state kept per partition
	// must be dropped or handed over here, and nothing of those partitions is handled again
	// until they are Assigned anew.
	Revoked func(parts []int)
	// DLQ receives the messages of a batch whose handler failed permanently. Nil: a
	// permanent failure stops the consumer.
	DLQ MessageWriter
	// Backoff paces retries of a failing batch, commit or dead-letter write.
	Backoff retry.Backoff
	// Grace bounds how long shutdown may spend finishing the batch in hand (default 15 s).
	Grace time.Duration
	// SessionTimeout defaults to 10 s; the embedded broker rejects anything under 6 s.
	SessionTimeout time.Duration
	Logger         *slog.Logger
}

// Handler processes one batch. Nil commits it (Last+1). An error marked retry.Permanent
// dead-letters the batch's messages (with the error) and commits; any other error retries
// the same batch with backoff, so nothing is skipped.
type Handler func(ctx context.Context, b Batch) error

// Consumer reads a topic through kafka-go's consumer-group API, one partition reader per
// assigned partition, and hands batches to one Handler in turn: a handler never runs twice
// at once, and within a partition batches come in offset order.
type Consumer struct {
	cfg   ConsumerConfig
	bus   Config
	group *kafka.ConsumerGroup
	log   *slog.Logger

	mu       sync.Mutex
	assigned []int
	lastErr  error
}

// NewConsumer joins cfg.Group (lazily: the group is joined by Run).
func NewConsumer(bc Config, cfg ConsumerConfig) (*Consumer, error) {
	if cfg.Topic == "" || cfg.Group == "" {
		return nil, errors.New("bus: consumer needs a Topic and a Group")
	}
	d, err := bc.Dialer()
	if err != nil {
		return nil, err
	}
	cfg.MaxBatch = orInt(cfg.MaxBatch, 1000)
	cfg.MaxWait = orDur(cfg.MaxWait, 100*time.Millisecond)
	cfg.Grace = orDur(cfg.Grace, 15*time.Second)
	if cfg.StartOffset == 0 {
		cfg.StartOffset = kafka.FirstOffset
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                cfg.Group,
		Brokers:           bc.Brokers,
		Dialer:            d,
		Topics:            []string{cfg.Topic},
		StartOffset:       cfg.StartOffset,
		SessionTimeout:    orDur(cfg.SessionTimeout, 10*time.Second),
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
		HeartbeatInterval: time.Second,
		// A partition added to the topic is picked up by a rebalance.
		WatchPartitionChanges: true,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: consumer group %s: %w", cfg.Group, err)
	}
	return &Consumer{cfg: cfg, bus: bc, group: g, log: cfg.Logger}, nil
}

// Assigned lists the partitions this member holds now.
func (c *Consumer) Assigned() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.assigned)
}

// Err is the last fetch, commit or handler failure (nil once a batch went through again):
// a consumer that keeps failing is not ready.
func (c *Consumer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

func (c *Consumer) setErr(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// Run consumes until ctx ends, then finishes the batch in hand (within Grace), commits it,
// leaves the group and returns nil. It returns an error only when the consumer cannot go on
// (a permanent failure without a DLQ, a failing Assigned).
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	defer c.group.Close()
	// Work on a batch continues past ctx's end, for at most Grace: shutdown commits.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.Grace, cancelWork) })
	defer stop()
	b := c.cfg.Backoff
	for {
		gen, err := c.group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			c.setErr(err)
			c.log.Warn("bus: joining the group", "group", c.cfg.Group, "err", err)
			if retry.Sleep(ctx, b.Next()) != nil {
				return nil
			}
			continue
		}
		b.Reset()
		done := make(chan error, 1)
		gen.Start(func(gctx context.Context) { done <- c.generation(ctx, gctx, work, gen, h) })
		if err := <-done; err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// generation consumes the generation's partitions until it ends (a rebalance) or ctx does.
func (c *Consumer) generation(ctx, gctx, work context.Context, gen *kafka.Generation, h Handler) error {
	var parts []Assignment
	for _, a := range gen.Assignments[c.cfg.Topic] {
		parts = append(parts, Assignment{Partition: a.ID, Offset: a.Offset})
	}
	slices.SortFunc(parts, func(a, b Assignment) int { return a.Partition - b.Partition })
	ids := make([]int, len(parts))
	for i, p := range parts {
		ids[i] = p.Partition
	}
	c.mu.Lock()
	c.assigned = ids
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.assigned = nil
		c.mu.Unlock()
		if c.cfg.Revoked != nil {
			c.cfg.Revoked(ids)
		}
	}()
	if c.cfg.Assigned != nil {
		if err := c.cfg.Assigned(ctx, parts); err != nil {
			return fmt.Errorf("bus: %s assigned %v: %w", c.cfg.Group, ids, err)
		}
	}
	c.log.Info("bus: partitions assigned", "group", c.cfg.Group, "topic", c.cfg.Topic, "partitions", ids, "generation", gen.ID)

	// Fetching stops when the generation or ctx ends; the batch in hand is still handled.
	fetchCtx, cancelFetch := context.WithCancel(ctx)
	defer cancelFetch()
	stop := context.AfterFunc(gctx, cancelFetch)
	defer stop()
	batches := make(chan Batch)
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.fetch(fetchCtx, p, batches)
		}()
	}
	defer wg.Wait()
	defer cancelFetch()
	for {
		select {
		case <-fetchCtx.Done():
			return nil
		case bt := <-batches:
			if err := c.handle(work, gctx, gen, bt, h); err != nil {
				return err
			}
		}
	}
}

// fetch reads one partition from its assigned offset into batches.
func (c *Consumer) fetch(ctx context.Context, a Assignment, out chan<- Batch) {
	d, _ := c.bus.Dialer() // validated by NewConsumer
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        c.bus.Brokers,
		Topic:          c.cfg.Topic,
		Partition:      a.Partition,
		Dialer:         d,
		MinBytes:       1,
		MaxBytes:       10 << 20,
		MaxWait:        500 * time.Millisecond,
		ReadBackoffMin: 50 * time.Millisecond,
		ReadBackoffMax: time.Second,
		QueueCapacity:  c.cfg.MaxBatch,
	})
	defer r.Close()
	if err := r.SetOffset(a.Offset); err != nil {
		c.log.Error("bus: seek", "topic", c.cfg.Topic, "partition", a.Partition, "offset", a.Offset, "err", err)
		return
	}
	b := c.cfg.Backoff
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.setErr(err)
			c.log.Warn("bus: fetch", "topic", c.cfg.Topic, "partition", a.Partition, "err", err)
			if retry.Sleep(ctx, b.Next()) != nil {
				return
			}
			continue
		}
		b.Reset()
		msgs := []kafka.Message{m}
		wait, cancel := context.WithTimeout(ctx, c.cfg.MaxWait)
		for len(msgs) < c.cfg.MaxBatch {
			m, err := r.FetchMessage(wait)
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		cancel()
		last := msgs[len(msgs)-1]
		bt := Batch{Topic: c.cfg.Topic, Partition: a.Partition, First: msgs[0].Offset, Last: last.Offset,
			Messages: msgs, Lag: max(0, last.HighWaterMark-last.Offset-1)}
		select {
		case out <- bt:
		case <-ctx.Done():
			return
		}
	}
}

// handle runs h on bt until it succeeds or fails permanently, then commits the batch while
// the generation (gctx) lasts.
func (c *Consumer) handle(ctx, gctx context.Context, gen *kafka.Generation, bt Batch, h Handler) error {
	b := c.cfg.Backoff
	for {
		err := h(ctx, bt)
		if err == nil {
			break
		}
		if retry.IsPermanent(err) {
			if c.cfg.DLQ == nil {
				return fmt.Errorf("bus: %s/%d@%d-%d: %w", bt.Topic, bt.Partition, bt.First, bt.Last, err)
			}
			if err := c.deadLetter(ctx, bt, err); err != nil {
				return err
			}
			break
		}
		c.setErr(err)
		c.log.Warn("bus: batch failed, retrying", "topic", bt.Topic, "partition", bt.Partition, "first", bt.First, "last", bt.Last, "err", err)
		if retry.Sleep(ctx, b.Next()) != nil {
			return nil // shutdown's grace ran out: the batch stays uncommitted and is redone
		}
	}
	b.Reset()
	for {
		// A generation that ended (its coordinator connection broke with the broker, a
		// rebalance) takes its connection with it: every commit through it would fail. The
		// next generation's owner redoes the batch from the last commit, and every Mercury
		// handler's writes are idempotent.
		if gctx.Err() != nil {
			c.log.Info("bus: generation ended before the commit; the batch is redone", "topic", bt.Topic, "partition", bt.Partition)
			return nil
		}
		err := gen.CommitOffsets(map[string]map[int]int64{bt.Topic: {bt.Partition: bt.Last + 1}})
		if err == nil {
			c.setErr(nil)
			return nil
		}
		// After a rebalance the commit is refused: the new owner redoes the batch, and every
		// Mercury handler's writes are idempotent.
		if errors.Is(err, kafka.RebalanceInProgress) || errors.Is(err, kafka.IllegalGeneration) || errors.Is(err, kafka.UnknownMemberId) {
			c.log.Info("bus: commit refused after a rebalance", "topic", bt.Topic, "partition", bt.Partition, "err", err)
			return nil
		}
		c.setErr(err)
		c.log.Warn("bus: commit failed, retrying", "topic", bt.Topic, "partition", bt.Partition, "err", err)
		if retry.Sleep(ctx, b.Next()) != nil {
			return nil
		}
	}
}

func (c *Consumer) deadLetter(ctx context.Context, bt Batch, cause error) error {
	for _, m := range bt.Messages {
		if err := c.DeadLetter(ctx, m, cause); err != nil {
			return err
		}
	}
	return nil
}

// DeadLetter writes m to mercury.dlq with err in its headers, retrying until it is written
// or ctx ends: a handler dead-letters a poison record this way and goes on with the batch.
func (c *Consumer) DeadLetter(ctx context.Context, m kafka.Message, err error) error {
	if c.cfg.DLQ == nil {
		return fmt.Errorf("bus: %s/%d@%d: no DLQ: %w", m.Topic, m.Partition, m.Offset, err)
	}
	b := c.cfg.Backoff
	for {
		werr := SendDLQ(ctx, c.cfg.DLQ, m, err)
		if werr == nil {
			return nil
		}
		c.log.Warn("bus: dead-letter write failed, retrying", "err", werr)
		if serr := retry.Sleep(ctx, b.Next()); serr != nil {
			return fmt.Errorf("bus: dead-letter at shutdown: %w (last error: %w)", serr, werr)
		}
	}
}
