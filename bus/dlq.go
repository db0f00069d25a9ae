package bus

import (
	"context"
	"fmt"
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
