package spool_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/schemas/schemastest"
)

func writeSpans(t *testing.T, sp *spool.Spool, spans []schemas.Span) (lost int) {
	t.Helper()
	w := sp.Writer(spool.StreamSpans)
	for i := range spans {
		n, _ := w.Commit(schemas.AppendSpan(w.Pending(), &spans[i]))
		lost += n
	}
	n, _ := w.Flush()
	return lost + n
}

// readStream returns every span id the spool holds, and the errors met per segment.
func readStream(t *testing.T, root string) (ids []schemas.SpanID, errs []error) {
	t.Helper()
	segs, err := spool.ListSegments(root, spool.StreamSpans)
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range segs {
		r, err := spool.OpenSegment(sg.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for {
			b, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				errs = append(errs, err)
				break
			}
			for _, rec := range b.Records {
				var s schemas.Span
				if _, err := schemas.DecodeSpan(rec, &s); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, s.SpanID)
			}
		}
		r.Close()
	}
	return ids, errs
}

func randomSpans(n int, seed uint64) []schemas.Span {
	r := rand.New(rand.NewPCG(seed, seed))
	out := make([]schemas.Span, n)
	for i := range out {
		out[i] = schemastest.Span(r, 3)
		out[i].SpanID = schemas.SpanID{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
	}
	return out
}

func TestWriteRotateRead(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(spool.Config{Dir: dir, SegmentBytes: 64 << 10, BlockBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	spans := randomSpans(3000, 1)
	if lost := writeSpans(t, sp, spans); lost != 0 {
		t.Fatalf("lost %d", lost)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := spool.ListSegments(dir, spool.StreamSpans)
	if len(segs) < 3 {
		t.Fatalf("expected rotation by size, got %d segments", len(segs))
	}
	ids, errs := readStream(t, dir)
	if len(errs) != 0 || len(ids) != len(spans) {
		t.Fatalf("read %d of %d spans, errors %v", len(ids), len(spans), errs)
	}
	for i, id := range ids {
		if id != spans[i].SpanID {
			t.Fatalf("span %d out of order", i)
		}
	}
	// Every segment is a valid container for goavro too.
	var n int
	for _, sg := range segs {
		f, _ := os.ReadFile(sg.Path)
		r, err := goavro.NewOCFReader(bytes.NewReader(f))
		if err != nil {
			t.Fatal(err)
		}
		for r.Scan() {
			if _, err := r.Read(); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n != len(spans) {
		t.Fatalf("goavro read %d of %d", n, len(spans))
	}
}

func TestRotateByAge(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1000, 0)
	sp, _ := spool.Open(spool.WithClock(spool.Config{Dir: dir, SegmentAge: time.Minute}, func() time.Time { return now }))
	defer sp.Close()
	writeSpans(t, sp, randomSpans(10, 2))
	now = now.Add(30 * time.Second)
	writeSpans(t, sp, randomSpans(10, 3))
	if segs, _ := spool.ListSegments(dir, spool.StreamSpans); len(segs) != 1 {
		t.Fatalf("rotated too early: %d segments", len(segs))
	}
	now = now.Add(31 * time.Second)
	writeSpans(t, sp, randomSpans(10, 4))
	if segs, _ := spool.ListSegments(dir, spool.StreamSpans); len(segs) != 2 {
		t.Fatalf("no rotation by age: %d segments", len(segs))
	}
}

func TestTornLastBlockIsSkipped(t *testing.T) {
	dir := t.TempDir()
	sp, _ := spool.Open(spool.Config{Dir: dir, BlockBytes: 1 << 10})
	writeSpans(t, sp, randomSpans(200, 5))
	sp.Close()
	segs, _ := spool.ListSegments(dir, spool.StreamSpans)
	last := segs[len(segs)-1]
	if err := os.Truncate(last.Path, last.Size-7); err != nil { // a crash mid-write
		t.Fatal(err)
	}
	ids, errs := readStream(t, dir)
	if len(errs) != 1 || !errors.Is(errs[0], schemas.ErrTornBlock) {
		t.Fatalf("want one torn-block error, got %v", errs)
	}
	if len(ids) == 0 || len(ids) >= 200 {
		t.Fatalf("read %d spans before the tear", len(ids))
	}
	// The restarted agent starts a new segment; the torn one is now sealed and the rest reads.
	sp2, _ := spool.Open(spool.Config{Dir: dir})
	writeSpans(t, sp2, randomSpans(5, 6))
	sp2.Close()
	ids2, _ := readStream(t, dir)
	if len(ids2) != len(ids)+5 {
		t.Fatalf("after restart read %d, want %d", len(ids2), len(ids)+5)
	}
}

func TestDiskBudget(t *testing.T) {
	dir := t.TempDir()
	const budget = 256 << 10
	sp, _ := spool.Open(spool.Config{Dir: dir, MaxBytes: budget, BlockBytes: 2 << 10})
	for i := 0; i < 20; i++ {
		writeSpans(t, sp, randomSpans(500, uint64(i)))
	}
	st := sp.Stats()
	sp.Close()
	if st.DeletedSegments == 0 || st.DeletedBytes == 0 {
		t.Fatalf("budget never enforced: %+v", st)
	}
	var total int64
	for _, s := range spool.Streams {
		segs, _ := spool.ListSegments(dir, s)
		for _, sg := range segs {
			total += sg.Size
		}
	}
	if total > budget {
		t.Fatalf("spool holds %d bytes, budget %d", total, budget)
	}
	if ids, errs := readStream(t, dir); len(errs) != 0 || len(ids) == 0 {
		t.Fatalf("after budget deletes: %d spans, %v", len(ids), errs)
	}
}

// failingFile accepts writes until its quota is used, then fails like a full disk.
type failingFile struct {
	spool.File
	left *atomic.Int64
}

func (f failingFile) Write(p []byte) (int, error) {
	if f.left.Add(-int64(len(p))) < 0 {
		n, _ := f.File.Write(p[:len(p)/2]) // a torn write
		return n, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	var left atomic.Int64
	left.Store(40 << 10)
	cfg := spool.Config{Dir: dir, BlockBytes: 4 << 10, OpenFile: func(path string) (spool.File, error) {
		f, err := spool.CreateSegmentFile(path)
		return failingFile{f, &left}, err
	}}
	sp, _ := spool.Open(cfg)
	lost := writeSpans(t, sp, randomSpans(1000, 7))
	if lost == 0 || sp.Stats().WriteErrors == 0 {
		t.Fatalf("disk full went unnoticed: lost %d, %+v", lost, sp.Stats())
	}
	left.Store(1 << 30) // space comes back
	if l := writeSpans(t, sp, randomSpans(100, 8)); l != 0 {
		t.Fatalf("lost %d after space came back", l)
	}
	sp.Close()
	ids, errs := readStream(t, dir)
	if len(errs) != 0 {
		t.Fatalf("torn writes were not cut off: %v", errs)
	}
	if want := 1000 - lost + 100; len(ids) != want {
		t.Fatalf("read %d spans, want %d", len(ids), want)
	}
}

func TestCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, spool.StreamSpans), 0o755)
	os.WriteFile(filepath.Join(dir, spool.StreamSpans, fmt.Sprintf("%020d.avro", 1)), []byte("garbage, not avro at all"), 0o644)
	if _, err := spool.OpenSegment(filepath.Join(dir, spool.StreamSpans, fmt.Sprintf("%020d.avro", 1))); !errors.Is(err, schemas.ErrCorrupt) {
		t.Fatalf("garbage segment: %v", err)
	}
}

// Debian's avro-bin reads the agent's spool files (CI installs it).
func TestAvropipeReadsSpool(t *testing.T) {
	bin, err := exec.LookPath("avropipe")
	if err != nil {
		t.Skip("avropipe not installed (Debian package avro-bin); skipping the interoperability check")
	}
	dir := t.TempDir()
	sp, _ := spool.Open(spool.Config{Dir: dir})
	spans := randomSpans(50, 9) // keys hold "/", hence the separator below
	spans[0].Operation = "GET /order/{id}"
	writeSpans(t, sp, spans)
	sp.Close()
	segs, _ := spool.ListSegments(dir, spool.StreamSpans)
	out, err := exec.Command(bin, "--separator", "|", segs[0].Path).CombinedOutput()
	if err != nil {
		t.Fatalf("avropipe: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("|0|operation\t\"GET /order/{id}\"")) {
		t.Fatalf("avropipe output lacks the operation:\n%.2000s", out)
	}
	if got := bytes.Count(out, []byte("|span_id\t")); got != len(spans) {
		t.Fatalf("avropipe printed %d span ids, want %d", got, len(spans))
	}
}
