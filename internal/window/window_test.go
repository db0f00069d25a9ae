package window

import "testing"

func sum(w *Window[int]) (n int) {
	for _, b := range w.Buckets() {
		n += b
	}
	return n
}

func TestAdvanceExpiresExactlyAtEdges(t *testing.T) {
	w := New[int](4, 10) // window of 40 ns
	*w.Advance(0) += 1
	*w.Advance(15) += 2
	*w.Advance(39) += 4
	if sum(w) != 7 {
		t.Fatalf("sum %d", sum(w))
	}
	w.Advance(40) // bucket [0,10) leaves exactly at 40
	if sum(w) != 6 {
		t.Fatalf("at 40: %d", sum(w))
	}
	w.Advance(59)
	if sum(w) != 4 {
		t.Fatalf("at 59: %d", sum(w))
	}
	w.Advance(1000) // jump far ahead: everything cleared
	if sum(w) != 0 {
		t.Fatalf("after jump: %d", sum(w))
	}
}

func TestClockGoingBackwards(t *testing.T) {
	w := New[int](4, 10)
	*w.Advance(100) += 1
	*w.Advance(85) += 1 // still inside the window: its own bucket
	*w.Advance(5) += 1  // older than the window: lands in the newest bucket
	if sum(w) != 3 || w.Buckets()[100/10%4] != 2 {
		t.Fatalf("buckets %v", w.Buckets())
	}
}

func TestCurrent(t *testing.T) {
	w := New[int](4, 10)
	if w.Current(0) {
		t.Fatal("fresh window has no current bucket")
	}
	w.Advance(25)
	for i := range 4 {
		if w.Current(i) != (i == 2) {
			t.Fatalf("Current(%d) = %v", i, w.Current(i))
		}
	}
}
