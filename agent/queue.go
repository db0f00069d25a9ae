package agent

import "sync"

// spanQueue is the bounded hand-off from the hot path to the writer. Producers append under a
// mutex (a channel send costs several times more under contention); the writer takes the
// whole batch at once and is woken only when the queue goes from empty to non-empty.
type spanQueue struct {
	mu     sync.Mutex
	buf    []*spanRecord
	max    int
	closed bool   // set by shutdown: later pushes are refused, so none can be stranded
	pushed uint64 // spans ever accepted; Flush waits for the writer to pass a value of it
	wake   chan struct{}
}

func newSpanQueue(max int) *spanQueue {
	return &spanQueue{buf: make([]*spanRecord, 0, max), max: max, wake: make(chan struct{}, 1)}
}

// push results.
const (
	pushed = iota
	queueFull
	queueClosed
)

// push adds s unless the queue is full or shut down.
func (q *spanQueue) push(s *spanRecord) int {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return queueClosed
	}
	if len(q.buf) >= q.max {
		q.mu.Unlock()
		return queueFull
	}
	q.buf = append(q.buf, s)
	q.pushed++
	first := len(q.buf) == 1
	q.mu.Unlock()
	if first {
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
