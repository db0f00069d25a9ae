package agent_test

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

// minuteSums adds up the per-minute deltas of heartbeats (minute start in Unix seconds).
func minuteSums(t *testing.T, beats []schemas.Heartbeat) map[int64]int64 {
	t.Helper()
	out := map[int64]int64{}
	for _, hb := range beats {
		for k, n := range hb.Stats {
			m, ok := strings.CutPrefix(k, schemas.StatMinutePrefix)
			if !ok {
				continue
			}
			sec, err := strconv.ParseInt(m, 10, 64)
			if err != nil || sec%60 != 0 {
				t.Fatalf("heartbeat key %q: not a minute start", k)
			}
			out[sec] += n
		}
		if n := hb.Stats[schemas.StatMinuteOverflow]; n != 0 {
			t.Fatalf("overflow %d", n)
		}
	}
	return out
}

// spanMinutes counts spans by start minute, the oracle.
func spanMinutes(spans []schemas.Span) map[int64]int64 {
	out := map[int64]int64{}
	for _, s := range spans {
		out[s.StartUnixNano/60e9*60]++
	}
	return out
}

// switchableFile fails every write while its switch is on: a disk that fills, then frees.
type switchableFile struct {
	spool.File
	fail   *atomic.Bool
	failed *atomic.Int64
}

func (f switchableFile) Write(p []byte) (int, error) {
	if f.fail.Load() {
		f.failed.Add(1)
		return 0, errors.New("no space left on device")
	}
	return f.File.Write(p)
}

// failing starts an agent whose writes to stream fail while the returned switch is on; the
// counter counts the failed writes.
func failing(t *testing.T, cfg agent.Config, stream string) (*agent.Agent, *atomic.Bool, *atomic.Int64) {
	t.Helper()
	var fail atomic.Bool
	var failed atomic.Int64
	cfg.SpoolDir = t.TempDir()
	cfg.SpoolOpenFile = func(path string) (spool.File, error) {
		f, err := spool.CreateSegmentFile(path)
		if err != nil || !strings.Contains(path, "/"+stream+"/") {
			return f, err
		}
		return switchableFile{f, &fail, &failed}, nil
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, &fail, &failed
}

func endSpans(a *agent.Agent, n int) {
	for i := 0; i < n; i++ {
		_, s := a.StartSpan(context.Background(), "op")
		s.End()
	}
}

// The heartbeats' per-minute deltas add up to the spans on disk, minute by minute, and a
// block lost to a failing disk is taken off them like off spans_written.
func TestHeartbeatMinutesCountWhatReachedTheDisk(t *testing.T) {
	a, fail, _ := failing(t, agent.Config{Service: "order", HeartbeatInterval: time.Hour, FlushInterval: time.Hour}, spool.StreamSpans)
	ctx := context.Background()
	endSpans(a, 30)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	endSpans(a, 20)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	fail.Store(false)
	endSpans(a, 10)
	spans, _, beats := records(t, a)
	if len(spans) != 40 {
		t.Fatalf("%d spans on disk, want 40", len(spans))
	}
	st := a.Stats()
	if st.Dropped[agent.DropDisk] != 20 || st.SpansWritten != 40 {
		t.Fatalf("stats: %+v", st)
	}
	got, want := minuteSums(t, beats), spanMinutes(spans)
	if !maps.Equal(got, want) {
		t.Fatalf("heartbeat minutes %v, spans on disk by minute %v", got, want)
	}
	if last := beats[len(beats)-1]; last.Stats["spans_written"] != 40 {
		t.Fatalf("final heartbeat: %v", last.Stats)
	}
}

// A block that fills up and fails inside Commit (not in a timed flush) is taken off too.
func TestHeartbeatMinutesDropAFullBlockThatFailed(t *testing.T) {
	a, fail, failed := failing(t, agent.Config{QueueSize: 1 << 14, HeartbeatInterval: time.Hour, FlushInterval: time.Hour}, spool.StreamSpans)
	fail.Store(true)
	// Far more than one 64 KiB block of spans: Commit writes full blocks, and they fail.
	endSpans(a, 5000)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if failed.Load() < 2 {
		t.Fatalf("%d failed writes: the spans fit in one block, the test checks nothing", failed.Load())
	}
	fail.Store(false)
	endSpans(a, 7)
	spans, _, beats := records(t, a)
	if len(spans) != 7 {
		t.Fatalf("%d spans on disk, want 7", len(spans))
	}
	if got, want := minuteSums(t, beats), spanMinutes(spans); !maps.Equal(got, want) {
		t.Fatalf("heartbeat minutes %v, spans on disk by minute %v", got, want)
	}
}

// A heartbeat that cannot be written keeps its deltas: the next one that reaches the disk
// carries them, so no minute's count is lost with a heartbeat.
func TestHeartbeatMinutesSurviveAFailedHeartbeat(t *testing.T) {
	a, fail, failed := failing(t, agent.Config{HeartbeatInterval: 5 * time.Millisecond}, spool.StreamHeartbeats)
	fail.Store(true)
	endSpans(a, 25)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Wait for heartbeats that carried the 25 and failed (polling, not sleeping a guess).
	after := failed.Load()
	deadline := time.Now().Add(20 * time.Second)
	for failed.Load() < after+2 {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat attempted while the disk failed")
		}
		time.Sleep(2 * time.Millisecond)
	}
	fail.Store(false)
	spans, _, beats := records(t, a)
	if got, want := minuteSums(t, beats), spanMinutes(spans); len(spans) != 25 || !maps.Equal(got, want) {
		t.Fatalf("%d spans; heartbeat minutes %v, spans by minute %v", len(spans), got, want)
	}
}
