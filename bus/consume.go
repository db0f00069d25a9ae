package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// DLQ header keys: where a dead letter came from and why.
const (
	HeaderDLQTopic     = "mercury.dlq.topic"
	HeaderDLQPartition = "mercury.dlq.partition"
	HeaderDLQOffset    = "mercury.dlq.offset"
	HeaderDLQError     = "mercury.dlq.error"
	HeaderDLQTime      = "mercury.dlq.time" // RFC 3339, when it was dead-lettered
)

// DeadLetter builds the mercury.dlq message for m that failed with err: same key and value,
// original headers kept, plus the origin (topic, partition, offset) and the error.
func DeadLetter(m kafka.Message, err error, now time.Time) kafka.Message {
	h := make([]kafka.Header, 0, len(m.Headers)+5)
	h = append(h, m.Headers...)
	h = append(h,
		kafka.Header{Key: HeaderDLQTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
		kafka.Header{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, m.Offset, 10)},
		kafka.Header{Key: HeaderDLQError, Value: []byte(err.Error())},
		kafka.Header{Key: HeaderDLQTime, Value: now.UTC().AppendFormat(nil, time.RFC3339Nano)},
	)
	return kafka.Message{Topic: TopicDLQ, Key: m.Key, Value: m.Value, Headers: h}
}

// MessageWriter is what the DLQ needs of a writer (a *kafka.Writer with no fixed Topic).
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// SendDLQ writes m to mercury.dlq with the error in its headers.
func SendDLQ(ctx context.Context, w MessageWriter, m kafka.Message, err error) error {
	if werr := w.WriteMessages(ctx, DeadLetter(m, err, time.Now())); werr != nil {
		return fmt.Errorf("bus: dead-letter %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, werr)
	}
	return nil
}

// permanentError marks an error that retrying cannot fix (undecodable record, poison input).
type permanentError struct{ err error }

func (p *permanentError) Error() string { return "permanent: " + p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent wraps err so Consume sends the message to the DLQ instead of retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err (or anything it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Fetcher is the part of *kafka.Reader the loop uses.
type Fetcher interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// LoopConfig configures Consume.
type LoopConfig struct {
	Reader Fetcher
	// Handle processes one message. Return Permanent(err) for poison input, any other error
	// to retry the same message with backoff (the loop never skips a message on its own).
	Handle func(ctx context.Context, m kafka.Message) error
	// DLQ receives permanently failed messages. Nil: a permanent error stops the loop.
	DLQ            MessageWriter
	CommitEvery    int           // commit after this many processed messages; default 500
	CommitInterval time.Duration // and at least this often while messages flow; default 1 s
	BackoffMin     time.Duration // default 100 ms
	BackoffMax     time.Duration // default 10 s
	Logger         *slog.Logger
}

// Consume runs fetch → process → commit until ctx ends. Messages are processed in fetch
// order, so within a partition the processed set is always contiguous and the commit is the
// last processed offset of each partition (kafka-go commits offset+1). On shutdown the
// processed-but-uncommitted offsets are committed before returning ctx.Err().
func Consume(ctx context.Context, lc LoopConfig) error {
	log := lc.Logger
	if log == nil {
		log = slog.Default()
	}
	every := orInt(lc.CommitEvery, 500)
	interval := orDur(lc.CommitInterval, time.Second)
	bmin, bmax := orDur(lc.BackoffMin, 100*time.Millisecond), orDur(lc.BackoffMax, 10*time.Second)

	pending := map[int]kafka.Message{} // partition → last processed message
	lastCommit := time.Now()
	commit := func(cctx context.Context) error {
		if len(pending) == 0 {
			return nil
		}
		msgs := make([]kafka.Message, 0, len(pending))
		for _, m := range pending {
			msgs = append(msgs, m)
		}
		if err := lc.Reader.CommitMessages(cctx, msgs...); err != nil {
			return fmt.Errorf("bus: commit: %w", err)
		}
		clear(pending)
		lastCommit = time.Now()
		return nil
	}
	shutdown := func() error {
		// The caller's ctx is gone; give the final commit its own short deadline.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := commit(cctx); err != nil {
			log.Warn("bus: final commit failed; the next owner replays from the last commit", "err", err)
		}
		return ctx.Err()
	}
	processed := 0
	for {
		// Fetch with a deadline so a quiet topic still gets its interval commit.
		fctx, cancel := context.WithTimeout(ctx, interval)
		m, err := lc.Reader.FetchMessage(fctx)
		cancel()
		if ctx.Err() != nil {
			return shutdown()
		}
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("bus: fetch: %w", err)
			}
		} else {
			if err := handleOne(ctx, lc, m, bmin, bmax, log); err != nil {
				if ctx.Err() != nil {
					return shutdown()
				}
				return err
			}
			pending[m.Partition] = m
			processed++
		}
		if processed >= every || (len(pending) > 0 && time.Since(lastCommit) >= interval) {
			processed = 0
			if err := commit(ctx); err != nil {
				if ctx.Err() != nil {
					return shutdown()
				}
				// After a broker restart kafka-go keeps using its dead coordinator connection
				// until a heartbeat fails and it rejoins (~2 s against the embedded broker);
				// the offsets stay pending and the next interval commits them.
				log.Warn("bus: commit failed, will retry", "err", err)
				lastCommit = time.Now()
			}
		}
	}
}

func handleOne(ctx context.Context, lc LoopConfig, m kafka.Message, bmin, bmax time.Duration, log *slog.Logger) error {
	b := Backoff{Min: bmin, Max: bmax}
	for {
		err := lc.Handle(ctx, m)
		if err == nil {
			return nil
		}
		if IsPermanent(err) {
			if lc.DLQ == nil {
				return fmt.Errorf("bus: %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
			}
			for {
				derr := SendDLQ(ctx, lc.DLQ, m, err)
				if derr == nil {
					return nil
				}
				log.Warn("bus: dead-letter write failed, retrying", "err", derr)
				if werr := b.Wait(ctx); werr != nil {
					return werr
				}
			}
		}
		log.Warn("bus: retryable error, backing off", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
		if werr := b.Wait(ctx); werr != nil {
			return werr
		}
	}
}

// Backoff is a bounded exponential backoff: Min, 2·Min, … capped at Max. Reset after success.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the next delay and doubles it for the time after.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	}
	d := b.cur
	b.cur = min(b.cur*2, b.Max)
	return d
}

// Reset starts over at Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Wait sleeps for Next() or until ctx ends.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits for d or until ctx ends, whichever comes first, and returns ctx.Err() in the
// second case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
