package agent

import (
	"sync"
	"sync/atomic"
)

// spanQueue is the bounded hand-off from the hot path to the writer. End encodes its span
// (queue_codec.go) and appends the bytes here under a mutex (a channel send costs several
// times more under contention); the writer takes the whole batch at once and decodes it while
// the queue fills the other of its two buffers.
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
// later.
type spanQueue struct {
	mu       sync.Mutex
	buf      []byte // encoded spans back to back: the batch being filled, in filling
	n        int    // spans in buf
	filling  *queueBuffer
	held     *queueBuffer // the writer's since its last take: it holds the batch it took
	max      int          // spans
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

// queueCycleBytes is how far batches move through a buffer before they wrap to its start (or
// the queue's byte bound, if smaller: a small queue stays small). Writing a cache line the
// other core still holds costs the caller a round trip to take it back, paid at the mutex's
// unlock; when every batch started at its buffer's start, the caller kept writing lines the
// writer had just read, and End cost up to 150 ns more. How far is far enough was measured on
// a 1 MiB-L2 core (BenchmarkSpan, bench module): 256 KiB 245 ns, 1 MiB 229, 2 MiB 220,
// 4 MiB 189, 8 MiB 184.
const queueCycleBytes = 4 << 20

// queueBuffer is one of the two buffers the queue alternates between: while the caller fills
// one, the writer reads the batch it took from the other.
type queueBuffer struct {
	mem  []byte
	next int // where its next batch starts
}

func newSpanQueue(size int) *spanQueue {
	q := &spanQueue{max: size, maxBytes: size * queueBytesPerSpan,
		wakeAt: max(1, min(size/8, 64)), wake: make(chan struct{}, 1)}
	// A batch holds a full queue without growing (growing would copy it, page faults
	// included, on the caller). Pages cost memory only once spans reach them.
	bytes := q.maxBytes + min(queueCycleBytes, q.maxBytes)
	q.filling, q.held = &queueBuffer{mem: make([]byte, bytes)}, &queueBuffer{mem: make([]byte, bytes)}
	q.buf = q.filling.window(q.maxBytes)
	return q
}

// window returns an empty batch at the buffer's next position with room for a full queue.
func (b *queueBuffer) window(maxBytes int) []byte {
	if b.next > len(b.mem)-maxBytes {
		b.next = 0
	}
	return b.mem[b.next:b.next:len(b.mem)]
}

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

// take hands the writer the queued spans and their count; they stay valid until its next
// take, which gives their buffer back to the queue.
func (q *spanQueue) take() ([]byte, int) {
	q.mu.Lock()
	b, n := q.buf, q.n
	q.filling.next += (len(b) + 63) &^ 63 // the batch after this one starts on a fresh line
	q.filling, q.held = q.held, q.filling
	q.buf, q.n = q.filling.window(q.maxBytes), 0
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
