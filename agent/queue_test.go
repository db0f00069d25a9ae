package agent

import "testing"

// Refused and released records become spare, never more than a full queue's worth, and get
// hands them out before new ones are allocated.
func TestQueueRecyclesBoundedRecords(t *testing.T) {
	q := newSpanQueue(2)
	if q.get() != nil {
		t.Fatal("a new queue has spare records")
	}
	rs := []*spanRecord{{}, {}, {}}
	for i, r := range rs {
		want := pushed
		if i == 2 {
			want = queueFull
		}
		if got := q.push(r); got != want {
			t.Fatalf("push %d = %d, want %d", i, got, want)
		}
	}
	batch := q.take(nil)
	if len(batch) != 2 {
		t.Fatalf("took %d spans, want 2", len(batch))
	}
	if len(q.free) != 1 || q.free[0] != rs[2] || rs[2].state.Load() != 1<<1 {
		t.Fatal("the refused record was not reset (a new generation) and made spare")
	}
	q.release(append(batch, &spanRecord{})...) // room for one more
	if len(q.free) != 2 {
		t.Fatalf("%d spare records, want 2", len(q.free))
	}
	if q.get() != rs[0] || q.get() != rs[2] || q.get() != nil {
		t.Fatal("get did not hand out the spare records, newest first")
	}
}
