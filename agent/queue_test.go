package agent

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// The queue is bounded by spans and by bytes, refuses everything once shut down, tells End
// when it would refuse, and take hands over exactly what was pushed.
func TestQueueBoundsSpansAndBytes(t *testing.T) {
	q := newSpanQueue(2)
	one, two := []byte("first"), []byte("second")
	for i, c := range []struct {
		span []byte
		want int
	}{{one, pushed}, {two, pushed}, {one, queueFull}} {
		if got := q.push(c.span); got != c.want {
			t.Fatalf("push %d = %d, want %d", i, got, c.want)
		}
	}
	if q.refusing.Load() != queueFull {
		t.Fatal("a full queue does not tell End to skip encoding")
	}
	b, n := q.take()
	if q.refusing.Load() != pushed {
		t.Fatal("an emptied queue still refuses")
	}
	if n != 2 || !bytes.Equal(b, []byte("firstsecond")) {
		t.Fatalf("took %d spans %q", n, b)
	}
	if q.len() != 0 || q.pushedSoFar() != 2 {
		t.Fatalf("after take: %d queued, %d pushed", q.len(), q.pushedSoFar())
	}
	if got := q.push(make([]byte, 2*queueBytesPerSpan+1)); got != queueFull {
		t.Fatalf("a span over the byte bound: push = %d, want queue full", got)
	}
	if got := q.push(one); got != pushed {
		t.Fatalf("push after take = %d", got)
	}
	q.shutdown()
	if got := q.push(one); got != queueClosed {
		t.Fatalf("push after shutdown = %d, want closed", got)
	}
	if q.take(); q.refusing.Load() != queueClosed {
		t.Fatal("a shut-down queue accepts again after the writer's last take")
	}
}

// Batches alternate between two buffers, each starting on the cache line after the last one
// taken from that buffer and wrapping once a cycle has gone by, always with room for a full
// queue; the bytes come out as they went in.
func TestQueueBatchesMoveThroughTheirBuffer(t *testing.T) {
	q := newSpanQueue(2)
	size := len(q.filling.mem)
	cycle := size - q.maxBytes
	var prev [2]int // each buffer's last batch, as the room left after its start
	wraps := 0
	for i := range 6 * cycle / 64 { // three cycles of each buffer
		span := []byte(fmt.Sprintf("span %d", i))
		if q.push(span) != pushed {
			t.Fatalf("push %d refused", i)
		}
		b, n := q.take()
		if n != 1 || !bytes.Equal(b, span) || cap(b) < q.maxBytes {
			t.Fatalf("take %d: %d spans %q, room %d", i, n, b, cap(b))
		}
		switch p := &prev[i%2]; {
		case *p == 0: // the buffer's first batch
		case cap(b) == size: // wrapped to the start
			wraps++
		case cap(b) != *p-64:
			t.Fatalf("take %d starts %d bytes after the last one in its buffer, want 64", i, *p-cap(b))
		}
		prev[i%2] = cap(b)
	}
	if wraps < 4 {
		t.Fatalf("%d wraps in three cycles of each buffer", wraps)
	}
}

// logLines records what the agent logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

// Bytes in the queue that do not decode (only a bug in End could put them there) are dropped
// under their own reason and logged; the writer goes on with the next batch.
func TestUndecodableQueueBytesAreCountedNotWritten(t *testing.T) {
	log := &logLines{}
	a, err := New(Config{Service: "s", SpoolDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	for range 3 {
		if a.spans.push([]byte{0xff, 0xff}) != pushed { // shorter than a header
			t.Fatal("push refused")
		}
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, s := a.StartSpan(context.Background(), "after")
	s.End()
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.Dropped[DropInternal] != 3 || st.SpansWritten != 1 {
		t.Fatalf("dropped %v, written %d; want 3 internal drops and the next span written", st.Dropped, st.SpansWritten)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	// One line per batch: a flush tick may have split the three.
	if len(log.lines) == 0 || !strings.Contains(log.lines[0], "queued spans") {
		t.Fatalf("logged %q", log.lines)
	}
}
