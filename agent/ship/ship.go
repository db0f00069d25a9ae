// Package ship is the agent's shipper: it tails the spool's Avro segments and produces every
// record to its Kafka topic, advancing a durable per-stream cursor only after the broker
// acknowledged (acks=all). Run it as the `mercury ship` sidecar or in-process next to the
// agent; it lives apart from agent/ so that linking the agent pulls in no Kafka client.
//
// Guarantees: at least once. Nothing acknowledged by the agent's spool is lost while its
// segment exists; after a crash the last unacknowledged batch may be sent again, and those
// records are counted as possible duplicates. Consumers are idempotent by (trace id, span id).
package ship

import (
	"context"
	"errors"
	"fmt"
	"github.com/mercury-apm/mercury/agent"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/bus"
)

// Config configures a Shipper. Only Spool and Bus.Brokers are required.
type Config struct {
	Spool     string     // the agent's spool root (holds spans/, events/, heartbeats/)
	Bus       bus.Config // brokers, TLS, SASL
	CursorDir string     // default <Spool>/.ship
	Streams   []string   // default Streams

	BatchRecords int           // records per send; default 5000
	InFlight     int           // batches sent concurrently (committed in order); default 2
	BatchBytes   int64         // message bytes per send; default 4 MiB
	Linger       time.Duration // wait this long for a batch to fill once the spool is drained; default 10 ms
	Poll         time.Duration // how often to look for new data when caught up; default 100 ms
	// RateBytes caps the produced message bytes per second (cross-DC links); 0 = unlimited.
	RateBytes int64
	// Compression: none (default), gzip, snappy, lz4, zstd. Spans are small and CPU on the
	// host is shared with the service, so compression is opt-in.
	Compression     string
	MaxMessageBytes int // larger records are dropped and counted; default 1 MiB

	BackoffMin  time.Duration // default 100 ms
	BackoffMax  time.Duration // default 5 s
	SendTimeout time.Duration // one send attempt; default 30 s

	Logger *slog.Logger
}

func (c *Config) defaults() error {
	if c.Spool == "" {
		return errors.New("ship: Spool directory required")
	}
	if len(c.Bus.Brokers) == 0 {
		return errors.New("ship: no brokers")
	}
	if _, err := bus.ParseCompression(c.Compression); err != nil {
		return err
	}
	if c.CursorDir == "" {
		c.CursorDir = filepath.Join(c.Spool, ".ship")
	}
	if len(c.Streams) == 0 {
		c.Streams = Streams
	}
	for _, s := range c.Streams {
		if topicOf(s) == "" {
			return fmt.Errorf("ship: unknown stream %q", s)
		}
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&c.Linger, 10*time.Millisecond)
	set(&c.Poll, 100*time.Millisecond)
	set(&c.BackoffMin, 100*time.Millisecond)
	set(&c.BackoffMax, 5*time.Second)
	set(&c.SendTimeout, 30*time.Second)
	if c.InFlight <= 0 {
		c.InFlight = 2
	}
	if c.BatchRecords <= 0 {
		c.BatchRecords = 5000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 4 << 20
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func topicOf(stream string) string {
	switch stream {
	case StreamSpans:
		return bus.TopicSpans
	case StreamEvents:
		return bus.TopicEvents
	case StreamHeartbeats:
		return bus.TopicHeartbeats
	}
	return ""
}

// keyFieldsOf names the top-level fields a stream's message key is built from.
func keyFieldsOf(stream string) []string {
	switch stream {
	case StreamSpans:
		return []string{"trace_id"} // → 32 lowercase hex chars: a trace stays in one partition
	case StreamEvents:
		return []string{"service"}
	case StreamHeartbeats:
		return []string{"service", "host"} // → service/host
	}
	return nil
}

// Shipper moves spooled records to Kafka.
type Shipper struct {
	cfg     Config
	streams []*stream

	mu      sync.Mutex
	running bool
	failed  error
}

// New validates the config and prepares the cursor directory. It opens no connection.
func New(cfg Config) (*Shipper, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.CursorDir, 0o755); err != nil {
		return nil, fmt.Errorf("ship: cursor dir: %w", err)
	}
	s := &Shipper{cfg: cfg}
	for _, name := range cfg.Streams {
		s.streams = append(s.streams, newStream(s, name))
	}
	return s, nil
}

// ForAgent is the in-process option: a shipper for the agent's own spool whose figures also
// travel in the agent's heartbeats. cfg.Spool is set from the agent; the caller runs Run.
func ForAgent(a *agent.Agent, cfg Config) (*Shipper, error) {
	cfg.Spool = a.SpoolDir()
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	a.ReportStats(func() map[string]int64 { return s.Stats().Map() })
	return s, nil
}

// Run ships until ctx ends, then returns nil. Cancelling ctx does not flush: the batch in
// flight is abandoned and sent again by the next run (that is the crash path too, so it is the
// path that is exercised). It returns an error only for failures retrying cannot fix, such as
// an unwritable cursor directory.
func (s *Shipper) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("ship: Run called twice")
	}
	s.running = true
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(s.streams))
	for _, st := range s.streams {
		go func() { errs <- st.run(ctx) }()
	}
	var first error
	for range s.streams {
		if err := <-errs; err != nil && first == nil && ctx.Err() == nil {
			first = err
			cancel() // one stream cannot go on: stop the others, let the supervisor restart us
		}
	}
	s.mu.Lock()
	s.failed = first
	s.mu.Unlock()
	return first
}

// StreamStats is one stream's figures.
type StreamStats struct {
	Records            int64         // records acknowledged by the broker
	Bytes              int64         // message value bytes acknowledged
	LagRecords         int64         // records on disk after the cursor
	LagBytes           int64         // segment bytes on disk after the cursor
	SendErrors         int64         // failed send attempts
	PossibleDuplicates int64         // records that may have been sent twice
	Segments           int64         // segment files on disk
	SkippedSegments    int64         // whole segments (or the rest of one) skipped: vanished, unreadable header or I/O error
	SkippedBlocks      int64         // damaged blocks stepped over (resynchronised at the next sync marker)
	SkippedBytes       int64         // bytes of those blocks
	SkippedRecords     int64         // records their headers declared, where readable
	DroppedRecords     int64         // records larger than MaxMessageBytes
	CursorAge          time.Duration // time since the cursor last advanced while lagging; 0 when caught up
}

// Stats is a snapshot of the shipper's figures per stream and in total.
type Stats struct {
	StreamStats
	Streams map[string]StreamStats
}

// Stats returns the current figures (cheap; safe from any goroutine).
func (s *Shipper) Stats() Stats {
	out := Stats{Streams: make(map[string]StreamStats, len(s.streams))}
	for _, st := range s.streams {
		v := st.stats()
		out.Streams[st.name] = v
		t := &out.StreamStats
		t.Records += v.Records
		t.Bytes += v.Bytes
		t.LagRecords += v.LagRecords
		t.LagBytes += v.LagBytes
		t.SendErrors += v.SendErrors
		t.PossibleDuplicates += v.PossibleDuplicates
		t.Segments += v.Segments
		t.SkippedSegments += v.SkippedSegments
		t.SkippedBlocks += v.SkippedBlocks
		t.SkippedBytes += v.SkippedBytes
		t.SkippedRecords += v.SkippedRecords
		t.DroppedRecords += v.DroppedRecords
		t.CursorAge = max(t.CursorAge, v.CursorAge)
	}
	return out
}

// Map flattens the totals for a heartbeat's stats map (shipper_<what>).
func (s Stats) Map() map[string]int64 {
	return map[string]int64{
		"shipper_records":             s.Records,
		"shipper_bytes":               s.Bytes,
		"shipper_lag_records":         s.LagRecords,
		"shipper_lag_bytes":           s.LagBytes,
		"shipper_send_errors":         s.SendErrors,
		"shipper_possible_duplicates": s.PossibleDuplicates,
		"shipper_segments":            s.Segments,
		"shipper_skipped_segments":    s.SkippedSegments,
		"shipper_skipped_blocks":      s.SkippedBlocks,
		"shipper_skipped_bytes":       s.SkippedBytes,
		"shipper_skipped_records":     s.SkippedRecords,
		"shipper_dropped_records":     s.DroppedRecords,
		"shipper_cursor_age_ms":       s.CursorAge.Milliseconds(),
	}
}

func (s *Shipper) streamNames() []string {
	out := make([]string, 0, len(s.streams))
	for _, st := range s.streams {
		out = append(out, st.name)
	}
	return slices.Clip(out)
}
