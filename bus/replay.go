package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// HeaderReplays counts how often a record was replayed from the DLQ. It survives being
// dead-lettered again (DeadLetter keeps the original headers), so a record that keeps failing
// stops bouncing between the DLQ and its topic after ReplayConfig.MaxReplays.
const HeaderReplays = "mercury.replays"

// ReplayConfig configures Replay.
type ReplayConfig struct {
	// Group keeps the replay's position in mercury.dlq, so a second run replays only what was
	// dead-lettered since. Default "dlq-replay".
	Group string
	// Follow keeps replaying new dead letters until ctx ends; by default Replay returns once
	// it has passed the end the DLQ had when it started.
	Follow bool
	// DryRun reports what would be replayed without producing or committing anything.
	DryRun bool
	// MaxReplays skips records already replayed this often; default 3.
	MaxReplays int
	// Report is told about every record read, with where it would go ("" when it is skipped)
	// and why it was skipped.
	Report func(m kafka.Message, to string, skipped error)
	Logger *slog.Logger
}

// ReplayStats counts what Replay did (or, in a dry run, would do).
type ReplayStats struct {
	Replayed, Skipped int
}

// Errors a record is skipped with.
var (
	ErrNoOrigin       = errors.New("no mercury.dlq.topic header naming a Mercury topic")
	ErrReplayedTooOft = errors.New("already replayed the maximum number of times")
)

// replayBatch is how many records are produced, then committed, together.
const replayBatch = 500

// Replay produces the records in mercury.dlq back to the topics they were dead-lettered from,
// once whatever rejected them is fixed (a collector that now knows a schema, a store that is
// back). Records keep their key, value and original headers; the DLQ's own headers are
// dropped and HeaderReplays is incremented. Progress is committed after the produce is
// acknowledged: at least once, like the rest of the pipeline, and the stores are idempotent.
func Replay(ctx context.Context, cfg Config, rc ReplayConfig) (ReplayStats, error) {
	if rc.Group == "" {
		rc.Group = "dlq-replay"
	}
	if rc.MaxReplays == 0 {
		rc.MaxReplays = 3
	}
	if rc.Logger == nil {
		rc.Logger = slog.Default()
	}
	behind, err := dlqBacklog(ctx, cfg, rc.Group)
	if err != nil || (len(behind) == 0 && !rc.Follow) {
		return ReplayStats{}, err
	}
	r, err := NewReader(cfg, ReaderConfig{Topic: TopicDLQ, GroupID: rc.Group})
	if err != nil {
		return ReplayStats{}, err
	}
	defer r.Close()
	w, err := NewWriter(cfg, WriterConfig{})
	if err != nil {
		return ReplayStats{}, err
	}
	defer CloseWriter(w)
	rp := &replay{rc: rc, r: r, w: w, behind: behind}
	for rc.Follow || len(rp.behind) > 0 {
		// A short fetch deadline flushes a partial batch while records trickle in.
		fctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		m, err := r.FetchMessage(fctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return rp.st, ctx.Err() // what was read but not flushed is replayed by the next run
		case errors.Is(err, context.DeadlineExceeded):
			err = rp.idle(ctx, cfg)
		case err != nil:
			err = fmt.Errorf("bus: replay: fetch: %w", err)
		default:
			err = rp.add(ctx, m)
		}
		if err != nil {
			return rp.st, err
		}
	}
	return rp.st, nil
}

// replay is one run of Replay: the batch read but not yet produced and committed, and the
// partitions still short of the end they had when the run started.
type replay struct {
	rc        ReplayConfig
	r         *kafka.Reader
	w         *kafka.Writer
	behind    map[int]int64
	read, out []kafka.Message
	st        ReplayStats
}

func (rp *replay) add(ctx context.Context, m kafka.Message) error {
	to, skip := replayTarget(m, rp.rc.MaxReplays)
	if rp.rc.Report != nil {
		rp.rc.Report(m, to, skip)
	}
	rp.read = append(rp.read, m)
	if skip != nil {
		rp.st.Skipped++
		rp.rc.Logger.Warn("bus: replay: skipping dead letter", "partition", m.Partition, "offset", m.Offset, "err", skip)
	} else {
		rp.out = append(rp.out, replayed(m, to))
	}
	if end, ok := rp.behind[m.Partition]; ok && m.Offset+1 >= end {
		delete(rp.behind, m.Partition)
	}
	if len(rp.read) >= replayBatch || len(rp.behind) == 0 {
		return rp.flush(ctx)
	}
	return nil
}

// flush produces the batch, then commits what was read (nothing in a dry run).
func (rp *replay) flush(ctx context.Context) error {
	if len(rp.read) == 0 {
		return nil
	}
	if !rp.rc.DryRun {
		if len(rp.out) > 0 {
			if err := rp.w.WriteMessages(ctx, rp.out...); err != nil {
				return fmt.Errorf("bus: replay: produce: %w", err)
			}
		}
		if err := rp.r.CommitMessages(ctx, rp.read...); err != nil {
			return fmt.Errorf("bus: replay: commit: %w", err)
		}
	}
	rp.st.Replayed += len(rp.out)
	rp.read, rp.out = rp.read[:0], rp.out[:0]
	return nil
}

// idle flushes what was read. Without --follow it then asks the broker which partitions are
// still behind: nothing arrives from one that retention emptied or that another replay in the
// group owns.
func (rp *replay) idle(ctx context.Context, cfg Config) error {
	if err := rp.flush(ctx); err != nil || rp.rc.Follow {
		return err
	}
	now, err := dlqBacklog(ctx, cfg, rp.rc.Group)
	if err != nil {
		return err
	}
	for p := range rp.behind {
		if _, ok := now[p]; !ok {
			delete(rp.behind, p)
		}
	}
	return nil
}

// dlqBacklog returns, per partition of mercury.dlq where group has not reached the end, the
// end offset (the next one to be written).
func dlqBacklog(ctx context.Context, cfg Config, group string) (map[int]int64, error) {
	cl, err := cfg.Client()
	if err != nil {
		return nil, err
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{TopicDLQ}})
	if err != nil {
		return nil, fmt.Errorf("bus: replay: metadata: %w", err)
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("bus: replay: %s: %w", TopicDLQ, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	offs, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{TopicDLQ: reqs}})
	if err != nil {
		return nil, fmt.Errorf("bus: replay: list offsets: %w", err)
	}
	committed, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{TopicDLQ: parts}})
	if err == nil && !errors.Is(committed.Error, kafka.GroupIdNotFound) { // a first run: nothing committed
		err = committed.Error
	}
	if err != nil {
		return nil, fmt.Errorf("bus: replay: group %s offsets: %w", group, err)
	}
	pos := map[int]int64{}
	for _, p := range committed.Topics[TopicDLQ] {
		if p.Error != nil {
			return nil, fmt.Errorf("bus: replay: group %s partition %d: %w", group, p.Partition, p.Error)
		}
		pos[p.Partition] = p.CommittedOffset
	}
	behind := map[int]int64{}
	for _, p := range offs.Topics[TopicDLQ] {
		if p.Error != nil {
			return nil, fmt.Errorf("bus: replay: %s partition %d: %w", TopicDLQ, p.Partition, p.Error)
		}
		if max(pos[p.Partition], p.FirstOffset) < p.LastOffset {
			behind[p.Partition] = p.LastOffset
		}
	}
	return behind, nil
}

// replayTarget is the topic a dead letter goes back to, or why it cannot.
func replayTarget(m kafka.Message, maxReplays int) (string, error) {
	to, _ := Header(m, HeaderDLQTopic)
	if to == TopicDLQ || !slices.Contains(Topics, to) {
		return "", ErrNoOrigin
	}
	if replays(m) >= maxReplays {
		return "", ErrReplayedTooOft
	}
	return to, nil
}

// replayed is m as it was before it was dead-lettered, with its replay count incremented.
func replayed(m kafka.Message, to string) kafka.Message {
	n := replays(m)
	h := make([]kafka.Header, 0, len(m.Headers)+1)
	for _, x := range m.Headers {
		if !strings.HasPrefix(x.Key, "mercury.dlq.") && x.Key != HeaderReplays {
			h = append(h, x)
		}
	}
	h = append(h, kafka.Header{Key: HeaderReplays, Value: strconv.AppendInt(nil, int64(n+1), 10)})
	return kafka.Message{Topic: to, Key: m.Key, Value: m.Value, Headers: h}
}

func replays(m kafka.Message) int {
	v, _ := Header(m, HeaderReplays)
	n, _ := strconv.Atoi(v)
	return n
}
