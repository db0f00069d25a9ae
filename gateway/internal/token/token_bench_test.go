package token

import "testing"

func BenchmarkGetDone(b *testing.B) {
	p := New(func(int64, error) {})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Get(int64(i))(nil)
	}
}
