package breaker

import (
	"testing"

	"github.com/mercury-apm/mercury/internal/cputime"
)

func BenchmarkSREAllowDone(b *testing.B) {
	br, _ := NewSRE(SREConfig{})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		done, err := br.Allow()
		if err == nil {
			done(nil)
		}
	}
	stop()
}

func BenchmarkClassicAllowDone(b *testing.B) {
	br, _ := NewClassic(ClassicConfig{FailureRatio: 0.5})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		done, err := br.Allow()
		if err == nil {
			done(nil)
		}
	}
	stop()
}
