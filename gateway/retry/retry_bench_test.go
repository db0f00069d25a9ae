package retry

import "testing"

func BenchmarkLocalAcquireDone(b *testing.B) {
	w, _ := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		w.Local()
		if done, err := w.Acquire(); err == nil {
			done(nil)
		}
	}
}
