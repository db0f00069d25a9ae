package tier

import (
	"testing"

	"github.com/mercury-apm/mercury/internal/cputime"
)

func BenchmarkAllow(b *testing.B) {
	s, _ := New(Config{MaxInFlight: 1000, Signals: []Signal{func() float64 { return 0.1 }}})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		done, err := s.Allow(2)
		if err == nil {
			done(nil)
		}
	}
	stop()
}
