package breaker

import "testing"

func BenchmarkSREAllowDone(b *testing.B) {
	br, _ := NewSRE(SREConfig{})
	b.ReportAllocs()
	for b.Loop() {
		done, err := br.Allow()
		if err == nil {
			done(nil)
		}
	}
}

func BenchmarkClassicAllowDone(b *testing.B) {
	br, _ := NewClassic(ClassicConfig{FailureRatio: 0.5})
	b.ReportAllocs()
	for b.Loop() {
		done, err := br.Allow()
		if err == nil {
			done(nil)
		}
	}
}
