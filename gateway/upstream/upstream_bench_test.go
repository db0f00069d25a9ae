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

// BenchmarkPickReport is one request's balancer work with outlier detection
// on: pick, report the outcome, release.
func BenchmarkPickReport(b *testing.B) {
	p, _ := New(Config{Instances: []string{"http://a:1", "http://b:1", "http://c:1"}, Balance: LeastLoaded, Outlier: &Outlier{}})
	b.ReportAllocs()
	stop := cputime.Measure(b)
	for b.Loop() {
		in, _ := p.Pick()
		in.Report(false)
		in.Done()
	}
	stop()
}
