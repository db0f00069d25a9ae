package spool

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/mercury-apm/mercury/schemas"
)

// SegmentReader reads a segment block by block, from the start or from a saved offset.
type SegmentReader struct {
	f      *os.File
	br     *bufio.Reader
	hdr    schemas.OCFHeader
	off    int64
	buf    []byte
	recs   [][]byte
	closed bool
}

// Block is one block of a segment: its byte range and each record's Avro body. Records alias
// the reader's buffers and are valid until the next call to Next.
type Block struct {
	Offset, End int64
	Records     [][]byte
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

// Next reads the next block. io.EOF is a clean end at a block boundary; an error wrapping
// schemas.ErrTornBlock is a partial block (still being written if the segment is active); one
// wrapping schemas.ErrCorrupt is damage. After an error the reader stays at the block's start,
// so a torn block can be retried once more of it is written.
func (r *SegmentReader) Next() (Block, error) {
	blk, n, err := schemas.ReadOCFBlock(r.br, &r.hdr, r.buf)
	if err != nil {
		if n > 0 {
			if serr := r.SeekTo(r.off); serr != nil {
				return Block{}, serr
			}
		}
		return Block{}, err
	}
	if cap(blk.Data) > cap(r.buf) {
		r.buf = blk.Data[:0]
	}
	b := Block{Offset: r.off, End: r.off + n}
	r.off += n
	r.recs, err = schemas.SplitRecords(r.hdr.Schema, blk.Data, blk.Count, r.recs[:0])
	if err != nil {
		return Block{}, fmt.Errorf("spool: block at %d: %w", b.Offset, err)
	}
	b.Records = r.recs
	return b, nil
}

// Close releases the file.
func (r *SegmentReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	return r.f.Close()
}

// Scan calls fn for every record of a stream, oldest first. A damaged or torn segment ends
// its own scan (counted in skipped) but not the stream's; fn's error stops everything.
func Scan(root, stream string, fn func(s *schemas.Schema, body []byte) error) (skipped int, err error) {
	segs, err := ListSegments(root, stream)
	if err != nil {
		return 0, err
	}
	for _, sg := range segs {
		r, err := OpenSegment(sg.Path)
		if err != nil {
			skipped++
			continue
		}
		for {
			b, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				skipped++
				break
			}
			for _, rec := range b.Records {
				if err := fn(r.Schema(), rec); err != nil {
					r.Close()
					return skipped, err
				}
			}
		}
		r.Close()
	}
	return skipped, nil
}
