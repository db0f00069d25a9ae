package bus

import (
	"errors"
	"time"

	"github.com/segmentio/kafka-go"
)

// ReaderConfig tunes a consumer-group reader.
type ReaderConfig struct {
	Topic   string
	GroupID string // required: Mercury consumers always commit through a group
	// StartOffset for a group with no committed offset: kafka.FirstOffset (default) or
	// kafka.LastOffset.
	StartOffset int64
	MinBytes    int           // default 1
	MaxBytes    int           // default 10 MiB
	MaxWait     time.Duration // default 500 ms
	// SessionTimeout defaults to 10 s; the embedded broker rejects anything under 6 s.
	SessionTimeout time.Duration
}

// NewReader builds a consumer-group reader with its own dialer. Offsets are committed
// synchronously (CommitInterval 0): the caller uses FetchMessage + CommitMessages after it
// processed the message, never ReadMessage, which commits before processing.
func NewReader(cfg Config, rc ReaderConfig) (*kafka.Reader, error) {
	if rc.GroupID == "" {
		return nil, errors.New("bus: reader needs a GroupID")
	}
	d, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	start := rc.StartOffset
	if start == 0 {
		start = kafka.FirstOffset
	}
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:          cfg.Brokers,
		GroupID:          rc.GroupID,
		Topic:            rc.Topic,
		Dialer:           d,
		MinBytes:         orInt(rc.MinBytes, 1),
		MaxBytes:         orInt(rc.MaxBytes, 10<<20),
		MaxWait:          orDur(rc.MaxWait, 500*time.Millisecond),
		StartOffset:      start,
		CommitInterval:   0,
		SessionTimeout:   orDur(rc.SessionTimeout, 10*time.Second),
		RebalanceTimeout: 10 * time.Second,
		JoinGroupBackoff: 500 * time.Millisecond,
		ReadBackoffMin:   50 * time.Millisecond,
		ReadBackoffMax:   time.Second,
		// kfake's segment reads are cheap and the loop below batches; a small queue keeps
		// memory bounded when a handler stalls on a retryable error.
		QueueCapacity: 1000,
	}), nil
}
