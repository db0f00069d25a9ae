package timeout

import (
	"testing"
	"time"
)

func BenchmarkObserveTimeout(b *testing.B) {
	e, _ := New(Config{Thwm: 300 * time.Millisecond, Tmax: 500 * time.Millisecond})
	b.ReportAllocs()
	for b.Loop() {
		e.Observe(e.Timeout() / 3)
	}
}
