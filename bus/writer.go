package bus

import (
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// WriterConfig tunes a writer. Zero values are sensible defaults.
type WriterConfig struct {
	Topic        string        // empty: each message names its topic
	BatchSize    int           // messages per partition batch; default 1000
	BatchBytes   int64         // bytes per partition batch; default 1 MiB (Kafka's message.max.bytes)
	BatchTimeout time.Duration // default 5 ms; kafka-go's own 1 s default stalls single writes
	Compression  string        // "", none, gzip, snappy, lz4, zstd
	// MaxAttempts is kafka-go's internal retry count; default 1 so the caller's backoff (which
	// knows about cursors and duplicates) owns retries.
	MaxAttempts  int
	WriteTimeout time.Duration // default 10 s
}

// ParseCompression maps a flag value to a kafka-go codec (0 = none).
func ParseCompression(s string) (kafka.Compression, error) {
	switch strings.ToLower(s) {
	case "", "none", "off":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("bus: unknown compression %q (none, gzip, snappy, lz4, zstd)", s)
}

// NewWriter builds a synchronous writer with acks=all, keyed partitioning compatible with the
// Java client (murmur2, so a trace lands in the same partition whoever produced it) and its
// own transport.
func NewWriter(cfg Config, wc WriterConfig) (*kafka.Writer, error) {
	t, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	comp, err := ParseCompression(wc.Compression)
	if err != nil {
		return nil, err
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        wc.Topic,
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    orInt(wc.BatchSize, 1000),
		BatchBytes:   orInt64(wc.BatchBytes, 1<<20),
		BatchTimeout: orDur(wc.BatchTimeout, 5*time.Millisecond),
		MaxAttempts:  orInt(wc.MaxAttempts, 1),
		WriteTimeout: orDur(wc.WriteTimeout, 10*time.Second),
		ReadTimeout:  orDur(wc.WriteTimeout, 10*time.Second),
		Compression:  comp,
		Transport:    t,
	}
	return w, nil
}

func orInt(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

func orInt64(v, d int64) int64 {
	if v > 0 {
		return v
	}
	return d
}

func orDur(v, d time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return d
}

// CloseWriter flushes and closes w, then closes its transport's pooled connections:
// kafka.Writer.Close leaves the transport's connection goroutines running.
func CloseWriter(w *kafka.Writer) error {
	err := w.Close()
	if t, ok := w.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
	return err
}
