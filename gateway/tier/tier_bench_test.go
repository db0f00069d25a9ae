package tier

import "testing"

func BenchmarkAllow(b *testing.B) {
	s, _ := New(Config{MaxInFlight: 1000, Signals: []Signal{func() float64 { return 0.1 }}})
	b.ReportAllocs()
	for b.Loop() {
		done, err := s.Allow(2)
		if err == nil {
			done(nil)
		}
	}
}
