package agent

import (
	"bytes"
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
