package agent

import (
	"sync"
	"sync/atomic"
)

// spanQueue is the bounded hand-off from the hot path to the writer. End encodes its span
// (queue_codec.go) and appends the bytes here under a mutex (a channel send costs several
// times more under contention); the writer swaps the whole buffer for an empty one and
// decodes it.
//
// Bytes, not records, cross to the writer's core. On two cores every cache line written on one
// and read on the other costs a round trip between them (100-450 ns on the VMs measured). A
// record handed over by pointer made that trip twice, there and back when reused, for each of
// its half a dozen lines plus the strings it points to; an encoded span is ~180 contiguous
// bytes that only ever travel one way. Records thus never leave the goroutine's P
// (sync.Pool), and the queue holds no pointers for the GC to scan.
//
// The writer is woken only when wakeAt spans wait, and otherwise drains the queue on its flush
// tick: waking a parked goroutine costs the caller about half a microsecond (more than the
// span itself), and the spool writes its blocks on that tick anyway, so spans reach the disk no
// later. Batches stay small (64) so the bytes in flight stay in cache.
type spanQueue struct {
	mu       sync.Mutex
	buf      []byte // encoded spans back to back (Avro bodies are self-delimiting)
	n        int    // spans in buf
	max      int    // spans
	maxBytes int
	wakeAt   int
	closed   bool   // set by shutdown: later pushes are refused, so none can be stranded
	pushed   uint64 // spans ever accepted; Flush waits for the writer to pass a value of it
	wake     chan struct{}
	// refusing is what push last answered instead of pushed (0 while it accepts), readable
	// without the mutex: End checks it before encoding, so a span an overloaded queue would
	// refuse costs nothing more than counting it.
	refusing atomic.Int32
}

// queueBytesPerSpan bounds the queue's bytes at QueueSize times this: a span with its tags
// encodes to 100-300 bytes, so only spans carrying large values (SQL text) meet this bound first.
const queueBytesPerSpan = 512

func newSpanQueue(size int) *spanQueue {
	q := &spanQueue{max: size, maxBytes: size * queueBytesPerSpan,
		wakeAt: max(1, min(size/8, 64)), wake: make(chan struct{}, 1)}
	q.buf = q.newBuffer()
	return q
}

// newBuffer returns a buffer that holds a full queue without growing: growing one as the
// queue fills would copy it, page faults included, on the caller. Its pages cost memory only
// once spans reach them.
func (q *spanQueue) newBuffer() []byte { return make([]byte, 0, q.maxBytes) }

// push results.
const (
	pushed = iota
	queueFull
	queueClosed
)

// push appends one encoded span unless the queue is full or shut down.
func (q *spanQueue) push(span []byte) int {
	q.mu.Lock()
	if q.closed || q.n >= q.max || len(q.buf)+len(span) > q.maxBytes {
		res := int32(queueFull)
		if q.closed {
			res = queueClosed
		}
		q.refusing.Store(res)
		q.mu.Unlock()
		return int(res)
	}
	q.buf = append(q.buf, span...)
	q.n++
	q.pushed++
	wake := q.n == q.wakeAt
	q.mu.Unlock()
	if wake {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return pushed
}

// shutdown refuses further pushes; what is queued stays for the writer's last drain.
func (q *spanQueue) shutdown() {
	q.mu.Lock()
	q.closed = true
	q.refusing.Store(queueClosed)
	q.mu.Unlock()
}

// take swaps the queued spans for spare (emptied) and returns them and their count.
func (q *spanQueue) take(spare []byte) ([]byte, int) {
	q.mu.Lock()
	b, n := q.buf, q.n
	q.buf, q.n = spare[:0], 0
	if !q.closed {
		q.refusing.Store(pushed)
	}
	q.mu.Unlock()
	return b, n
}

func (q *spanQueue) pushedSoFar() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pushed
}

func (q *spanQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
