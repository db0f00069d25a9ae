package bus_test

import (
	"maps"
	"testing"

	"github.com/mercury-apm/mercury/bus"
)

func TestOffsetTrackerCommitsLowestContiguous(t *testing.T) {
	var tr bus.OffsetTracker
	for _, o := range []int64{10, 11, 12, 15, 16} { // 13, 14 were compacted away
		tr.Add(0, o)
	}
	tr.Add(1, 3)
	step := func(part int, off int64, want map[int]int64) {
		t.Helper()
		tr.Done(part, off)
		if got := tr.Committable(); !maps.Equal(got, want) {
			t.Fatalf("after done %d/%d: committable %v, want %v", part, off, got, want)
		}
	}
	step(0, 12, map[int]int64{})            // 10, 11 still running
	step(0, 10, map[int]int64{0: 11})       // 10 done
	step(1, 3, map[int]int64{0: 11, 1: 4})  // other partition independent
	step(0, 16, map[int]int64{0: 11, 1: 4}) // gap at 11
	step(0, 11, map[int]int64{0: 13, 1: 4}) // 10, 11, 12 contiguous; 15 pending
	step(0, 15, map[int]int64{0: 17, 1: 4}) // all done; the compacted gap is no gap
	if p := tr.Partitions(); len(p) != 2 || p[0] != 0 || p[1] != 1 {
		t.Fatalf("partitions %v", p)
	}
}
