package retry

import "testing"

// The failover decision: take a slot, report the probe.
func BenchmarkAcquireDone(b *testing.B) {
	w, _ := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		if done, err := w.Acquire(); err == nil {
			done(nil)
		}
	}
}

// Counting a local request, on every request of a retry-enabled route.
func BenchmarkLocal(b *testing.B) {
	w, _ := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		w.Local()
	}
}
