package bbr

import (
	"testing"

	"github.com/mercury-apm/mercury/gateway/cpu"
)

func BenchmarkAllowDone(b *testing.B) {
	src := &cpu.Fixed{}
	src.Set(0.9) // past the threshold: the full decision path runs
	l, _ := New(Config{CPU: src})
	b.ReportAllocs()
	for b.Loop() {
		done, err := l.Allow()
		if err == nil {
			done(nil)
		}
	}
}
