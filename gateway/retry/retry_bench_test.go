package retry

import (
	"testing"

	"github.com/mercury-apm/mercury/internal/cputime"
)

// The failover decision: take a slot, report the probe.
func BenchmarkAcquireDone(b *testing.B) {
	w, _ := New(Config{})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		if done, err := w.Acquire(); err == nil {
			done(nil)
		}
	}
	stop()
}

// Counting a local request, on every request of a retry-enabled route.
func BenchmarkLocal(b *testing.B) {
	w, _ := New(Config{})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		w.Local()
	}
	stop()
}

func BenchmarkRateObserve(b *testing.B) {
	r := NewRate(0, nil)
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		r.Observe(false)
	}
	stop()
}

func BenchmarkBudgetAcquireRelease(b *testing.B) {
	bu, _ := NewBudget(20, 3)
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		if bu.Acquire(10) == nil {
			bu.Release()
		}
	}
	stop()
}
