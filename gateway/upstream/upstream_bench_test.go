package upstream

import (
	"testing"

	"github.com/mercury-apm/mercury/internal/cputime"
)

func BenchmarkPickLeastLoaded(b *testing.B) {
	p, _ := New(Config{Instances: []string{"http://a:1", "http://b:1", "http://c:1"}, Balance: LeastLoaded})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		in, _ := p.Pick()
		in.Done()
	}
	stop()
}
