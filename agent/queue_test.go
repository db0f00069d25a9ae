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
	spare := make([]byte, 0, 64)
	b, n := q.take(spare)
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
	if b, _ := q.take(nil); &b[:1][0] != &spare[:1][0] {
		t.Fatal("take did not reuse the spare buffer")
	}
	q.shutdown()
	if got := q.push(one); got != queueClosed {
		t.Fatalf("push after shutdown = %d, want closed", got)
	}
	if q.take(nil); q.refusing.Load() != queueClosed {
		t.Fatal("a shut-down queue accepts again after the writer's last take")
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
