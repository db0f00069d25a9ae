package bbr

import (
	"testing"

	"github.com/mercury-apm/mercury/gateway/cpu"
	"github.com/mercury-apm/mercury/internal/cputime"
)

func BenchmarkAllowDone(b *testing.B) {
	src := &cpu.Fixed{}
	src.Set(0.9) // past the threshold: the full decision path runs
	l, _ := New(Config{CPU: src})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		done, err := l.Allow()
		if err == nil {
			done(nil)
		}
	}
	stop()
}
