package agentbench

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkCoreToCore measures the machine, not Mercury: two goroutines pass a counter back
// and forth through one cache line, so ns/op is a round trip of that line between two cores
// (when the scheduler puts them on two). Any tracer that hands a span from the caller's
// goroutine to a background one pays a share of this per span; read the span benchmarks'
// wall times next to it.
func BenchmarkCoreToCore(b *testing.B) {
	if runtime.GOMAXPROCS(0) < 2 {
		b.Skip("needs two cores")
	}
	var turn atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int64(1); i < int64(2*b.N); i += 2 {
			for turn.Load() != i {
			}
			turn.Store(i + 1)
		}
	}()
	for i := int64(0); i < int64(2*b.N); i += 2 {
		for turn.Load() != i {
		}
		turn.Store(i + 1)
	}
	<-done
}
