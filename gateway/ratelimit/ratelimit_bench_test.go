package ratelimit

import (
	"testing"
	"time"
)

func BenchmarkAllow(b *testing.B) {
	l, _ := New(Config{Limit: 1 << 62, Window: time.Second, Buckets: 10})
	b.ReportAllocs()
	for b.Loop() {
		done, _ := l.Allow()
		done(nil)
	}
}
