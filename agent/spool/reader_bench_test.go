package spool_test

import (
	"io"
	"testing"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/internal/cputime"
	"github.com/mercury-apm/mercury/schemas"
)

// BenchmarkSegmentReader reads a whole spans segment as the agent writes it (default 64 KiB
// blocks, 20,000 spans, ~5 MB) block by block and splits every record: the shipper's and
// `mercury spool cat`'s read path without Kafka. The file stays in the page cache; cpu-ns/op
// is steadier than ns/op on a shared machine.
//
//	go test ./agent/spool -run '^$' -bench SegmentReader -benchmem
func BenchmarkSegmentReader(b *testing.B) {
	dir := b.TempDir()
	sp, err := spool.Open(spool.Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	w := sp.Writer(spool.StreamSpans)
	spans := randomSpans(20000, 3)
	for i := range spans {
		w.Commit(schemas.AppendSpan(w.Pending(), &spans[i]))
	}
	w.Flush()
	sp.Close()
	segs, _ := spool.ListSegments(dir, spool.StreamSpans)
	if len(segs) != 1 {
		b.Fatalf("%d segments, want 1", len(segs))
	}
	b.SetBytes(segs[0].Size)
	b.ReportAllocs()
	b.ResetTimer()
	stop := cputime.Measure(b)
	for range b.N {
		r, err := spool.OpenSegment(segs[0].Path)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			blk, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n += len(blk.Records)
		}
		r.Close()
		if n != len(spans) {
			b.Fatalf("read %d of %d spans", n, len(spans))
		}
	}
	stop()
}
