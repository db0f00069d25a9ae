package ship

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/schemas/schemastest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// spoolWriter writes segments the way agent/spool does: header in one write, each block in
// one write, a new segment only after the last write to the previous one.
type spoolWriter struct {
	t      testing.TB
	dir    string
	seq    uint64
	f      *os.File
	sync   [16]byte
	schema string
	buf    []byte
}

func newSpoolWriter(t testing.TB, root, stream, recordName string) *spoolWriter {
	dir := filepath.Join(root, stream)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &spoolWriter{t: t, dir: dir, schema: schemas.Current(recordName).JSON()}
	copy(w.sync[:], fmt.Sprintf("sync-%-11s", stream))
	return w
}

func (w *spoolWriter) path(seq uint64) string {
	return filepath.Join(w.dir, fmt.Sprintf("%020d.avro", seq))
}

// rotate seals the current segment and starts the next one.
func (w *spoolWriter) rotate() {
	w.create()
	w.header()
}

// create seals the current segment and creates the next one, still empty: the moment between
// the agent's open and its first write.
func (w *spoolWriter) create() {
	if w.f != nil {
		w.f.Close()
	}
	w.seq++
	f, err := os.OpenFile(w.path(w.seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

func (w *spoolWriter) header() { w.write(schemas.AppendOCFHeader(nil, w.schema, w.sync)) }

func (w *spoolWriter) write(b []byte) {
	if _, err := w.f.Write(b); err != nil {
		w.t.Fatal(err)
	}
}

// block appends one block holding the given record bodies.
func (w *spoolWriter) block(bodies [][]byte) {
	if w.f == nil {
		w.rotate()
	}
	w.buf = w.buf[:0]
	for _, b := range bodies {
		w.buf = append(w.buf, b...)
	}
	w.write(schemas.AppendOCFBlock(nil, len(bodies), w.buf, w.sync))
}

func (w *spoolWriter) close() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// spanGen makes distinct spans: span id = a counter, so sets can be compared.
type spanGen struct {
	r *rand.Rand
	n uint64
}

func newSpanGen(seed uint64) *spanGen { return &spanGen{r: rand.New(rand.NewPCG(seed, 1))} }

// block writes a block of n new spans with w and returns their ids.
func (g *spanGen) block(w *spoolWriter, n int) []schemas.SpanID {
	bodies, ids := g.bodies(n)
	w.block(bodies)
	return ids
}

// expect adds ids to the set a consumer must read.
func expect(want map[schemas.SpanID]bool, ids []schemas.SpanID) {
	for _, id := range ids {
		want[id] = true
	}
}

func (g *spanGen) bodies(n int) ([][]byte, []schemas.SpanID) {
	out := make([][]byte, n)
	ids := make([]schemas.SpanID, n)
	for i := range out {
		s := schemastest.Span(g.r, 2)
		g.n++
		s.SpanID = schemas.SpanID{}
		for j := 0; j < 8; j++ {
			s.SpanID[j] = byte(g.n >> (56 - 8*j))
		}
		ids[i] = s.SpanID
		out[i] = schemas.AppendSpan(nil, &s)
	}
	return out, ids
}
