package spool

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mercury-apm/mercury/schemas"
)

// SegmentReader reads a segment block by block, from the start or from a saved offset.
//
// It steps over damage instead of giving up on the rest of the segment: every block ends with
// the 16-byte sync marker of the file header, so after a corrupt block reading resumes at the
// end the block's header claims or after the next sync marker, whichever first starts a good
// block. Only what the damage touched is lost, and Next reports it as a damaged Block.
type SegmentReader struct {
	f      *os.File
	br     *bufio.Reader
	hdr    schemas.OCFHeader
	off    int64
	buf    []byte
	recs   [][]byte
	window []byte // sync marker search, allocated on the first damage
	closed bool
}

// Block is one block of a segment: its byte range and each record's Avro body. Records alias
// the reader's buffers and are valid until the next call to Next.
//
// A Block with a non-zero Damage is a damaged stretch the reader stepped over: it holds no
// records, Err says what was wrong with its first block, and End is where reading goes on. A
// cursor may stop at its End like at any block's.
type Block struct {
	Offset, End int64
	Records     [][]byte
	Damage      Damage
	Err         error
}

// Damage counts what damaged stretches cost.
type Damage struct {
	Blocks  int64 // blocks lost: one per sync marker in the stretch (a destroyed marker merges two)
	Bytes   int64
	Records int64 // records the lost blocks' headers declare, where a header is readable and fits its block
}

// Add adds o to d.
func (d *Damage) Add(o Damage) {
	d.Blocks, d.Bytes, d.Records = d.Blocks+o.Blocks, d.Bytes+o.Bytes, d.Records+o.Records
}

// OpenSegment opens a segment and parses its header. Errors wrap schemas.ErrCorrupt (not an
// Avro file) or schemas.ErrTornBlock (the header is not fully written yet, or never will be).
func OpenSegment(path string) (*SegmentReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := &SegmentReader{f: f, br: bufio.NewReaderSize(f, 256<<10)}
	if r.hdr, err = schemas.ReadOCFHeader(r.br); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: %s: %w", path, err)
	}
	r.off = r.hdr.Len
	return r, nil
}

// Schema is the segment's writer schema.
func (r *SegmentReader) Schema() *schemas.Schema { return r.hdr.Schema }

// Size is the file's size now (a listing's size may predate the writer's last writes).
func (r *SegmentReader) Size() (int64, error) {
	fi, err := r.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// DataStart is the offset of the first block.
func (r *SegmentReader) DataStart() int64 { return r.hdr.Len }

// SeekTo moves to a block boundary that Next reported earlier (or DataStart).
func (r *SegmentReader) SeekTo(off int64) error {
	if off < r.hdr.Len {
		off = r.hdr.Len
	}
	if _, err := r.f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	r.br.Reset(r.f)
	r.off = off
	return nil
}

// Next reads the next block. io.EOF is a clean end at a block boundary. An error wrapping
// schemas.ErrTornBlock means the data ends inside a block: one still being written if the
// segment is active (retry later: the reader stays at the block's start), a crash's torn tail
// or damage reaching the end if it is sealed (SkipTail steps over it). Damage followed by more
// data is no error: Next returns it as a damaged Block and goes on after it. Other errors are
// I/O errors.
func (r *SegmentReader) Next() (Block, error) {
	start := r.off
	b, err := r.read()
	switch {
	case err == nil, err == io.EOF:
		return b, err
	case errors.Is(err, schemas.ErrTornBlock):
		// Unfinished, unless a sync marker follows: then the header claims more bytes than the
		// block has. The writer may have finished the block since the read, so read it again
		// before calling it damage.
		size, serr := r.Size()
		if serr != nil {
			return Block{}, serr
		}
		if _, found, serr := r.findSync(start, size); serr != nil {
			return Block{}, serr
		} else if !found {
			return Block{}, err
		}
		if err2 := r.SeekTo(start); err2 != nil {
			return Block{}, err2
		}
		if b, err = r.read(); err == nil {
			return b, nil
		}
	case !errors.Is(err, schemas.ErrCorrupt):
		return Block{}, err
	}
	return r.resync(start, err)
}

// read reads the block at r.off. After an error the reader is back at the block's start.
func (r *SegmentReader) read() (Block, error) {
	start := r.off
	blk, n, err := schemas.ReadOCFBlock(r.br, &r.hdr, r.buf)
	if cap(blk.Data) > cap(r.buf) {
		r.buf = blk.Data[:0]
	}
	if err == nil {
		r.recs, err = schemas.SplitRecords(r.hdr.Schema, blk.Data, blk.Count, r.recs[:0]) // errors wrap ErrCorrupt
	}
	if err != nil {
		if n > 0 {
			if serr := r.SeekTo(start); serr != nil {
				return Block{}, serr
			}
		}
		if err != io.EOF {
			err = fmt.Errorf("spool: block at %d: %w", start, err)
		}
		return Block{}, err
	}
	r.off += n
	return Block{Offset: start, End: r.off, Records: r.recs}, nil
}

// resync steps over the damaged block at from. Candidates for the next good block are the end
// the damaged block's header claims, then the position after each sync marker; a candidate is
// taken only if a whole block reads there (or the data ends there, or a block still being
// written starts there), so 16 marker bytes turning up by chance inside damage cannot make the
// reader resume mid-block.
func (r *SegmentReader) resync(from int64, cause error) (Block, error) {
	size, err := r.Size()
	if err != nil {
		return Block{}, err
	}
	if h, ok := r.blockHeader(from); ok && h.end() <= size {
		if good, err := r.resumesAt(h.end(), size); err != nil || good {
			return r.stepOver(from, h.end(), Damage{Blocks: 1, Records: h.count}, cause, err)
		}
	}
	var d Damage
	chunk := from // start of the lost block being counted
	for {
		p, found, err := r.findSync(chunk, size)
		if err != nil {
			return Block{}, errors.Join(err, r.SeekTo(from))
		}
		if !found {
			break
		}
		end := p + int64(len(r.hdr.Sync))
		r.countLost(chunk, end, &d)
		chunk = end
		if good, err := r.resumesAt(end, size); err != nil || good {
			return r.stepOver(from, end, d, cause, err)
		}
	}
	if chunk > from {
		return r.stepOver(from, chunk, d, cause, nil) // the damage at chunk is reported by the next call
	}
	// Damage with no sync marker after it: not bounded yet, like a block being written.
	if err := r.SeekTo(from); err != nil {
		return Block{}, err
	}
	return Block{}, fmt.Errorf("%w: no sync marker after damage: %w", schemas.ErrTornBlock, cause)
}

// resumesAt reports whether reading can go on at off: a good block starts there, the data
// ends there, or a block starts there that is still being written (no sync marker after it).
func (r *SegmentReader) resumesAt(off, size int64) (bool, error) {
	if err := r.SeekTo(off); err != nil {
		return false, err
	}
	_, err := r.read()
	switch {
	case err == nil, err == io.EOF:
		return true, nil
	case errors.Is(err, schemas.ErrTornBlock):
		// A block being written has no sync marker after its start, nor one across it (off
		// inside a marker is mid-block).
		_, found, err := r.findSync(off-int64(len(r.hdr.Sync)-1), size)
		return !found, err
	case errors.Is(err, schemas.ErrCorrupt):
		return false, nil
	}
	return false, err
}

// stepOver positions the reader at end and returns the damaged stretch [from, end).
func (r *SegmentReader) stepOver(from, end int64, d Damage, cause, err error) (Block, error) {
	if err == nil {
		err = r.SeekTo(end)
	}
	if err != nil {
		return Block{}, err
	}
	d.Bytes = end - from
	return Block{Offset: from, End: end, Damage: d, Err: cause}, nil
}

// countLost counts the blocks in [from, end), a stretch ending with a sync marker: one, or
// more where a destroyed marker merged blocks and the first one's header says where it ends
// (believed only if at least the first half of its data splits into the records it declares).
// Records are counted only from such headers.
func (r *SegmentReader) countLost(from, end int64, d *Damage) {
	const minBlock = 2 + 16 // two one-byte varints and the marker
	for {
		d.Blocks++
		h, ok := r.blockHeader(from)
		if ok && h.end() == end {
			d.Records += h.count
			return
		}
		if !ok || h.end() > end-minBlock || !r.splits(h) {
			return // the rest of the stretch counts as one block of unknown records
		}
		d.Records += h.count
		from = h.end()
	}
}

// splits reports whether the block's data holds the records its header declares, at least up
// to damage in its second half.
func (r *SegmentReader) splits(h blockHeader) bool {
	if int64(cap(r.buf)) < h.size {
		r.buf = make([]byte, h.size)
	}
	data := r.buf[:h.size]
	if _, err := r.f.ReadAt(data, h.data); err != nil || r.hdr.Codec != "null" {
		return false
	}
	var err error
	r.recs, err = schemas.SplitRecords(r.hdr.Schema, data, h.count, r.recs[:0])
	if err == nil {
		return true
	}
	// Damage at the end of the block stops the split there; a header that is itself garbage
	// points into the middle of records, where a split fails at once.
	var parsed int64
	for _, rec := range r.recs {
		parsed += int64(len(rec))
	}
	return 2*parsed >= h.size && 2*int64(len(r.recs)) >= h.count
}

// blockHeader is a block's header as read, which damage may have rewritten.
type blockHeader struct {
	count, size int64
	data        int64 // offset of the block's data
}

// end is where the block ends if its header is right.
func (h blockHeader) end() int64 { return h.data + h.size + 16 }

func (r *SegmentReader) blockHeader(off int64) (blockHeader, bool) {
	var b [2 * binary.MaxVarintLen64]byte
	n, _ := r.f.ReadAt(b[:], off)
	count, size, hl, ok := schemas.OCFBlockHeader(b[:n])
	return blockHeader{count: count, size: size, data: off + int64(hl)}, ok
}

// findSync returns the offset of the first sync marker that starts at or after off and ends by
// size.
func (r *SegmentReader) findSync(off, size int64) (int64, bool, error) {
	if r.window == nil {
		r.window = make([]byte, 64<<10)
	}
	sync := r.hdr.Sync[:]
	for off+int64(len(sync)) <= size {
		n, err := r.f.ReadAt(r.window[:min(int64(len(r.window)), size-off)], off)
		if err != nil && err != io.EOF {
			return 0, false, err
		}
		if i := bytes.Index(r.window[:n], sync); i >= 0 {
			return off + int64(i), true, nil
		}
		if n < len(sync) {
			break
		}
		off += int64(n - len(sync) + 1) // a marker may straddle two windows
	}
	return 0, false, nil
}

// SkipTail steps over the rest of a sealed segment after Next reported ErrTornBlock: a block
// torn by a crash, or damage with no sync marker after it. The returned Block is that stretch
// (one lost block, with its record count if its header is readable) and the reader is at the
// end, where Next reports io.EOF.
func (r *SegmentReader) SkipTail(cause error) (Block, error) {
	size, err := r.Size()
	if err != nil || size <= r.off {
		return Block{Offset: r.off, End: r.off}, err
	}
	d := Damage{Blocks: 1}
	if h, ok := r.blockHeader(r.off); ok && h.end() > size {
		d.Records = h.count
	}
	return r.stepOver(r.off, size, d, cause, nil)
}

// Close releases the file.
func (r *SegmentReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	return r.f.Close()
}

// ScanResult is what Scan could not read.
type ScanResult struct {
	Unreadable int    // segments whose header does not parse, skipped whole
	Damage     Damage // damaged stretches and torn tails of sealed segments, stepped over
	Unfinished int64  // bytes of a block still being written at the end of the newest segment
}

// Scan calls fn for every record of a stream, oldest first, stepping over damage like Next.
// fn's error stops everything.
func Scan(root, stream string, fn func(s *schemas.Schema, body []byte) error) (ScanResult, error) {
	var res ScanResult
	segs, err := ListSegments(root, stream)
	if err != nil {
		return res, err
	}
	for i, sg := range segs {
		r, err := OpenSegment(sg.Path)
		if err != nil {
			res.Unreadable++
			continue
		}
		err = scanSegment(r, i == len(segs)-1, &res, fn)
		r.Close()
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func scanSegment(r *SegmentReader, newest bool, res *ScanResult, fn func(s *schemas.Schema, body []byte) error) error {
	for {
		b, err := r.Next()
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, schemas.ErrTornBlock) && newest:
			size, serr := r.Size()
			res.Unfinished = size - r.off
			return serr
		case errors.Is(err, schemas.ErrTornBlock):
			if b, err = r.SkipTail(err); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		res.Damage.Add(b.Damage)
		for _, rec := range b.Records {
			if err := fn(r.Schema(), rec); err != nil {
				return err
			}
		}
	}
}
