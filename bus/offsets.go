package bus

import (
	"maps"
	"slices"
	"sync"
)

// OffsetTracker finds the offsets that are safe to commit when messages finish out of order
// (a consumer that processes a batch concurrently, or acknowledges after an asynchronous
// store write): per partition, the committable position is just past the longest run of done
// offsets starting at the first one fetched. Offsets must be added in fetch order, which is
// increasing per partition.
type OffsetTracker struct {
	mu    sync.Mutex
	parts map[int]*partOffsets
}

type partOffsets struct {
	pending []int64        // fetched, in order; pending[0] is the lowest not yet committable
	done    map[int64]bool // finished, not yet contiguous
	next    int64          // committable: everything below is done; -1 before anything was
}

// Add records a fetched message's offset.
func (t *OffsetTracker) Add(partition int, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.parts == nil {
		t.parts = map[int]*partOffsets{}
	}
	p := t.parts[partition]
	if p == nil {
		p = &partOffsets{done: map[int64]bool{}, next: -1}
		t.parts[partition] = p
	}
	p.pending = append(p.pending, offset)
}

// Done marks an offset as processed.
func (t *OffsetTracker) Done(partition int, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[partition]
	if p == nil {
		return
	}
	p.done[offset] = true
	n := 0
	for n < len(p.pending) && p.done[p.pending[n]] {
		delete(p.done, p.pending[n])
		p.next = p.pending[n] + 1
		n++
	}
	p.pending = p.pending[n:]
}

// Committable returns, per partition with progress, the offset to commit (Kafka semantics:
// the next offset to read). Partitions with nothing contiguous done are absent.
func (t *OffsetTracker) Committable() map[int]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[int]int64{}
	for part, p := range t.parts {
		if p.next >= 0 {
			out[part] = p.next
		}
	}
	return out
}

// Partitions lists the tracked partitions in order (for logs and tests).
func (t *OffsetTracker) Partitions() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Sorted(maps.Keys(t.parts))
}
