package degrade

import (
	"testing"
	"time"
)

func BenchmarkAllowDone(b *testing.B) {
	s, _ := New(Config{Auto: &AutoConfig{ErrorRate: 0.5, For: 5 * time.Second}})
	b.ReportAllocs()
	for b.Loop() {
		if done, err := s.Allow(); err == nil {
			done(nil)
		}
	}
}
