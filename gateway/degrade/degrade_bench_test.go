package degrade

import (
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/cputime"
)

func BenchmarkAllowDone(b *testing.B) {
	s, _ := New(Config{Auto: &AutoConfig{ErrorRate: 0.5, For: 5 * time.Second}})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		if done, err := s.Allow(); err == nil {
			done(nil)
		}
	}
	stop()
}
