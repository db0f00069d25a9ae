package ratelimit

import (
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/cputime"
)

func BenchmarkAllow(b *testing.B) {
	l, _ := New(Config{Limit: 1 << 62, Window: time.Second, Buckets: 10})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		done, _ := l.Allow()
		done(nil)
	}
	stop()
}
