package timeout

import (
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/cputime"
)

func BenchmarkObserveTimeout(b *testing.B) {
	e, _ := New(Config{Thwm: 300 * time.Millisecond, Tmax: 500 * time.Millisecond})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		e.Observe(e.Timeout() / 3)
	}
	stop()
}
