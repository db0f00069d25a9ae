package upstream

import "testing"

func BenchmarkPickLeastLoaded(b *testing.B) {
	p, _ := New(Config{Instances: []string{"http://a:1", "http://b:1", "http://c:1"}, Balance: LeastLoaded})
	b.ReportAllocs()
	for b.Loop() {
		in, _ := p.Pick()
		in.Done()
	}
}
