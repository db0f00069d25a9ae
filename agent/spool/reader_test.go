package spool_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

// block is one block of a test segment as written: its range and its spans.
type block struct {
	off, end int64
	ids      []schemas.SpanID
}

// largeSegment writes n spans as the agent does into one segment of 16 KiB blocks and returns
// its path and blocks.
func largeSegment(t *testing.T, n int) (string, []block) {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(spool.Config{Dir: dir, BlockBytes: 16 << 10, SegmentBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if lost := writeSpans(t, sp, randomSpans(n, 15)); lost != 0 {
		t.Fatalf("lost %d", lost)
	}
	sp.Close()
	segs, _ := spool.ListSegments(dir, spool.StreamSpans)
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	r, err := spool.OpenSegment(segs[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var blocks []block
	for {
		b, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil || b.Damage != (spool.Damage{}) {
			t.Fatalf("clean segment: %v %+v", err, b.Damage)
		}
		blocks = append(blocks, block{off: b.Offset, end: b.End, ids: spanIDs(t, b.Records)})
	}
	return segs[0].Path, blocks
}

func spanIDs(t *testing.T, recs [][]byte) []schemas.SpanID {
	t.Helper()
	ids := make([]schemas.SpanID, len(recs))
	for i, rec := range recs {
		var s schemas.Span
		if _, err := schemas.DecodeSpan(rec, &s); err != nil {
			t.Fatal(err)
		}
		ids[i] = s.SpanID
	}
	return ids
}

// readSegment reads a segment as the shipper does once it is sealed: stepping over damage,
// and over a torn tail with SkipTail.
func readSegment(t *testing.T, path string) (ids []schemas.SpanID, d spool.Damage) {
	t.Helper()
	r, err := spool.OpenSegment(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		b, err := r.Next()
		if err == io.EOF {
			return ids, d
		}
		if errors.Is(err, schemas.ErrTornBlock) {
			b, err = r.SkipTail(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if b.Damage != (spool.Damage{}) && (b.Err == nil || len(b.Records) != 0) {
			t.Fatalf("damaged stretch %+v with error %v and %d records", b.Damage, b.Err, len(b.Records))
		}
		d.Add(b.Damage)
		ids = append(ids, spanIDs(t, b.Records)...)
	}
}

// A damaged region costs the blocks it touches and no more, wherever it lies: in a block
// header, in the data, in a sync marker, across a block boundary, at either end, or several at
// once. The lost blocks, bytes and (where a header is readable) records are counted exactly.
func TestDamageCostsOnlyTheBlocksItTouches(t *testing.T) {
	path, blocks := largeSegment(t, 20000)
	if len(blocks) < 200 {
		t.Fatalf("only %d blocks", len(blocks))
	}
	clean, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	last := len(blocks) - 1
	mid := func(i int) int64 { return (blocks[i].off + blocks[i].end) / 2 }
	// A damage overwrites [off, off+n) with fill, or flips its bits when fill is 0.
	type damage struct {
		off, n int64
		fill   byte
	}
	type lost struct {
		block    int
		readable bool // its header is intact, so its record count is known
	}
	for _, tc := range []struct {
		name   string
		damage []damage
		lost   []lost
	}{
		{"block header", []damage{{blocks[10].off, 12, 0xff}}, []lost{{10, false}}},
		{"100 bytes flipped in the data", []damage{{mid(50), 100, 0}}, []lost{{50, true}}},
		{"sync marker", []damage{{blocks[90].end - 12, 6, 0}}, []lost{{90, true}}},
		{"across a boundary into the next header", []damage{{blocks[130].end - 40, 50, 0xff}}, []lost{{130, true}, {131, false}}},
		{"first block", []damage{{blocks[0].off + 20, 100, 0}}, []lost{{0, true}}},
		{"last block", []damage{{mid(last), 100, 0}}, []lost{{last, true}}},
		{"last sync marker", []damage{{blocks[last].end - 3, 3, 0}}, []lost{{last, true}}},
		{"several regions", []damage{
			{blocks[5].off, 12, 0xff}, {mid(40), 100, 0}, {blocks[70].end - 10, 4, 0},
			{blocks[100].end - 40, 50, 0xff}, {mid(101), 30, 0}, {mid(last), 100, 0},
		}, []lost{{5, false}, {40, true}, {70, true}, {100, true}, {101, false}, {last, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := slices.Clone(clean)
			for _, d := range tc.damage {
				for i := d.off; i < d.off+d.n; i++ {
					if d.fill == 0 {
						data[i] ^= 0xff
					} else {
						data[i] = d.fill
					}
				}
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			var want []schemas.SpanID
			var wantDamage spool.Damage
			gone := map[int]bool{}
			for _, l := range tc.lost {
				gone[l.block] = true
				b := blocks[l.block]
				wantDamage.Blocks++
				wantDamage.Bytes += b.end - b.off
				if l.readable {
					wantDamage.Records += int64(len(b.ids))
				}
			}
			for i, b := range blocks {
				if !gone[i] {
					want = append(want, b.ids...)
				}
			}
			got, d := readSegment(t, path)
			if !slices.Equal(got, want) {
				t.Fatalf("read %d spans, want the %d outside the damaged blocks, each once and in order", len(got), len(want))
			}
			if d != wantDamage {
				t.Fatalf("damage %+v, want %+v", d, wantDamage)
			}
		})
	}
}

// At the end of the active segment a block still being written is waited for, even right
// after damage, and is neither counted nor skipped; once complete it reads. A header claiming
// more bytes than the file holds is damage, not an unfinished block, when a sync marker follows.
func TestTornTailAfterDamageIsWaitedFor(t *testing.T) {
	path, blocks := largeSegment(t, 3000)
	clean, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	last := len(blocks) - 1
	data := slices.Clone(clean)
	for i := range int64(100) {
		data[(blocks[last-1].off+blocks[last-1].end)/2+i] ^= 0xff
	}
	// Block last-3 claims 1 MiB: far past the end, but its own sync marker follows.
	hdr := blocks[last-3].off
	if _, _, hl, ok := schemas.OCFBlockHeader(data[hdr:]); !ok || hl != 4 {
		t.Fatalf("block header of %d bytes", hl)
	}
	copy(data[hdr:], []byte{0x02, 0xfe, 0xff, 0x7f}) // count 1, size 1048575 in the same 4 bytes
	cut := (blocks[last].off + blocks[last].end) / 2
	if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := spool.OpenSegment(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ids []schemas.SpanID
	var d spool.Damage
	var tornErr error
	for tornErr == nil {
		b, err := r.Next()
		switch {
		case errors.Is(err, schemas.ErrTornBlock):
			tornErr = err
		case err != nil:
			t.Fatal(err)
		}
		d.Add(b.Damage)
		ids = append(ids, spanIDs(t, b.Records)...)
	}
	for range 3 { // polled again: still waiting, nothing counted
		if _, err := r.Next(); !errors.Is(err, schemas.ErrTornBlock) {
			t.Fatalf("torn tail read again: %v", err)
		}
	}
	want := spool.Damage{Blocks: 2, Bytes: blocks[last-3].end - blocks[last-3].off + blocks[last-1].end - blocks[last-1].off,
		Records: int64(len(blocks[last-1].ids))}
	if d != want {
		t.Fatalf("damage %+v, want %+v", d, want)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data[cut:]); err != nil { // the writer completes the block
		t.Fatal(err)
	}
	f.Close()
	b, err := r.Next()
	if err != nil || b.Offset != blocks[last].off || len(b.Records) != len(blocks[last].ids) {
		t.Fatalf("completed block: %v, %+v", err, b)
	}
	ids = append(ids, spanIDs(t, b.Records)...)
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last block: %v", err)
	}
	var wantIDs []schemas.SpanID
	for i, b := range blocks {
		if i != last-3 && i != last-1 {
			wantIDs = append(wantIDs, b.ids...)
		}
	}
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("read %d spans, want %d", len(ids), len(wantIDs))
	}
}

// Random damage anywhere after the file header: every block it does not touch still reads,
// in order, and the bytes stepped over are at most the touched blocks'. (A touched block may
// still read: bits flipped inside a string parse, and OCF has no checksum.)
func TestRandomDamageLosesAtMostTheTouchedBlocks(t *testing.T) {
	path, blocks := largeSegment(t, 3000)
	clean, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	start, end := blocks[0].off, blocks[len(blocks)-1].end
	r := rand.New(rand.NewPCG(21, 21))
	for trial := range 300 {
		data := slices.Clone(clean)
		var touched []int
		for range 1 + r.IntN(3) {
			n := 1 + r.Int64N(300)
			off := start + r.Int64N(end-start-n)
			fill := byte(r.IntN(2) * 0xff)
			for i := off; i < off+n; i++ {
				if fill == 0 {
					data[i] ^= byte(1 + r.IntN(255))
				} else {
					data[i] = fill
				}
			}
			for i, b := range blocks {
				if off < b.end && off+n > b.off && !slices.Contains(touched, i) {
					touched = append(touched, i)
				}
			}
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, d := readSegment(t, path)
		var maxLost spool.Damage
		var intact []schemas.SpanID
		for i, b := range blocks {
			if slices.Contains(touched, i) {
				maxLost.Blocks++
				maxLost.Bytes += b.end - b.off
				maxLost.Records += int64(len(b.ids))
			} else {
				intact = append(intact, b.ids...)
			}
		}
		if !isSubsequence(intact, got) {
			t.Fatalf("trial %d: an untouched block was lost (touched %v, damage %+v)", trial, touched, d)
		}
		// Block and record counts come from headers, which the damage may have rewritten; the
		// bytes stepped over are exact.
		if d.Bytes > maxLost.Bytes || len(got) > len(intact)+int(maxLost.Records) {
			t.Fatalf("trial %d: damage %+v, read %d, but only blocks %v (%+v) were touched", trial, d, len(got), touched, maxLost)
		}
	}
}

func isSubsequence(sub, seq []schemas.SpanID) bool {
	i := 0
	for _, id := range seq {
		if i < len(sub) && sub[i] == id {
			i++
		}
	}
	return i == len(sub)
}
