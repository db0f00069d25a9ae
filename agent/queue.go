package agent

import "sync"

// spanQueue is the bounded hand-off from the hot path to the writer. Producers append under a
// mutex (a channel send costs several times more under contention); the writer takes the
// whole batch at once. It is woken only when the queue reaches wakeAt spans, and otherwise
// drains it on its flush tick: waking a parked goroutine costs the caller about half a
// microsecond (more than the span itself), which a service at modest load paid on nearly every
// span, and the spool writes its blocks on that tick anyway, so spans reach the disk no later.
// Batches stay small (64) so the records in flight stay in cache.
//
// It also carries the records back: the writer returns them in chunks as it encodes them, and
// Start reuses them from free. A sync.Pool did this before, but the writer put records into
// its own core's cache, so nearly every Get on the caller's core was a slow steal from the
// writer's (a quarter of Start's time in the profile).
type spanQueue struct {
	mu     sync.Mutex
	buf    []*spanRecord
	free   []*spanRecord // reset records; at most max, as many as a full queue holds anyway
	max    int
	wakeAt int
	closed bool   // set by shutdown: later pushes are refused, so none can be stranded
	pushed uint64 // spans ever accepted; Flush waits for the writer to pass a value of it
	wake   chan struct{}
}

func newSpanQueue(size int) *spanQueue {
	return &spanQueue{buf: make([]*spanRecord, 0, size), free: make([]*spanRecord, 0, size), max: size,
		wakeAt: max(1, min(size/8, 64)), wake: make(chan struct{}, 1)}
}

// get returns a reset record, or nil when none is spare.
func (q *spanQueue) get() *spanRecord {
	var r *spanRecord
	q.mu.Lock()
	if n := len(q.free); n > 0 {
		r = q.free[n-1]
		q.free = q.free[:n-1]
	}
	q.mu.Unlock()
	return r
}

// release makes reset records spare: the writer's, a chunk at a time, and discarded spans'.
func (q *spanQueue) release(rs ...*spanRecord) {
	q.mu.Lock()
	q.spare(rs...)
	q.mu.Unlock()
}

func (q *spanQueue) spare(rs ...*spanRecord) {
	q.free = append(q.free, rs[:min(len(rs), q.max-len(q.free))]...)
}

// push results.
const (
	pushed = iota
	queueFull
	queueClosed
)

// push adds s unless the queue is full or shut down. A refused record is reset and made spare
// in the same critical section: refusing is what an overloaded host does most.
func (q *spanQueue) push(s *spanRecord) int {
	q.mu.Lock()
	if q.closed || len(q.buf) >= q.max {
		res := queueFull
		if q.closed {
			res = queueClosed
		}
		s.reset()
		q.spare(s)
		q.mu.Unlock()
		return res
	}
	q.buf = append(q.buf, s)
	q.pushed++
	wake := len(q.buf) == q.wakeAt
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
	q.mu.Unlock()
}

// take swaps the queued spans for spare (emptied) and returns them.
func (q *spanQueue) take(spare []*spanRecord) []*spanRecord {
	clear(spare)
	q.mu.Lock()
	b := q.buf
	q.buf = spare[:0]
	q.mu.Unlock()
	return b
}

func (q *spanQueue) pushedSoFar() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pushed
}

func (q *spanQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf)
}
