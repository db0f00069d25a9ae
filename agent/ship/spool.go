package ship

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mercury-apm/mercury/schemas"
)

// Spool layout (written by agent/spool): <root>/<stream>/<%020d seq>.avro, each an Avro OCF
// written block by block in single write calls. A segment is sealed once a higher seq exists.
// This file is a private reader of that contract, small enough to swap for agent/spool's
// exported reader when both live on the same branch.

// Streams the agent spools, with their topic and partition key fields.
const (
	StreamSpans      = "spans"
	StreamEvents     = "events"
	StreamHeartbeats = "heartbeats"
)

// Streams lists every spooled stream.
var Streams = []string{StreamSpans, StreamEvents, StreamHeartbeats}

type segment struct {
	Stream, Path string
	Seq          uint64
	Size         int64
}

// listSegments returns the stream's segments in ascending seq; a missing dir is empty.
func listSegments(root, stream string) ([]segment, error) {
	dir := filepath.Join(root, stream)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []segment
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || len(name) != 25 || !strings.HasSuffix(name, ".avro") {
			continue
		}
		seq, err := strconv.ParseUint(name[:20], 10, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted between ReadDir and Info
		}
		out = append(out, segment{Stream: stream, Path: filepath.Join(dir, name), Seq: seq, Size: info.Size()})
	}
	slices.SortFunc(out, func(a, b segment) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return out, nil
}

// segmentReader reads blocks of one segment and re-reads past the end as the writer appends.
type segmentReader struct {
	f         *os.File
	br        *bufio.Reader
	hdr       schemas.OCFHeader
	pos       int64 // offset of the next block
	buf       []byte
	dataStart int64
}

// openSegment parses the header; its errors wrap schemas.ErrTornBlock (header not complete
// yet, or a crash before it was) or schemas.ErrCorrupt, and os.ErrNotExist for a vanished file.
func openSegment(path string) (*segmentReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := &segmentReader{f: f, br: bufio.NewReaderSize(f, 256<<10)}
	r.hdr, err = schemas.ReadOCFHeader(r.br)
	if err != nil {
		f.Close()
		if !errors.Is(err, schemas.ErrTornBlock) && !errors.Is(err, schemas.ErrCorrupt) {
			// ReadOCFHeader reports an unusable codec or schema without a class: both mean
			// the file cannot be shipped, ever.
			err = fmt.Errorf("%w: %v", schemas.ErrCorrupt, err)
		}
		return nil, err
	}
	if r.hdr.Codec != "null" {
		f.Close()
		// Records are forwarded as written; deflated blocks would need re-framing per record.
		return nil, fmt.Errorf("%w: codec %s (the agent writes null)", schemas.ErrCorrupt, r.hdr.Codec)
	}
	r.dataStart, r.pos = r.hdr.Len, r.hdr.Len
	return r, nil
}

func (r *segmentReader) Schema() *schemas.Schema { return r.hdr.Schema }

// seek positions the reader at a block boundary returned earlier.
func (r *segmentReader) seek(off int64) error {
	if _, err := r.f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	r.br.Reset(r.f)
	r.pos = off
	return nil
}

// next reads the next block: its start, end and data (valid until the next call). io.EOF at
// a clean end; on ErrTornBlock the reader is left at the block start so a retry re-reads it.
func (r *segmentReader) next() (start, end int64, count int64, data []byte, err error) {
	blk, n, err := schemas.ReadOCFBlock(r.br, &r.hdr, r.buf)
	if err != nil {
		if n > 0 || !errors.Is(err, io.EOF) {
			// bufio consumed part of a block: go back to its start for the retry.
			if serr := r.seek(r.pos); serr != nil {
				return 0, 0, 0, nil, serr
			}
		} else {
			// At EOF bufio remembers the error; reset so appended bytes become visible.
			r.br.Reset(r.f)
		}
		return 0, 0, 0, nil, err
	}
	r.buf = blk.Data[:0]
	start, r.pos = r.pos, r.pos+n
	return start, r.pos, blk.Count, blk.Data, nil
}

func (r *segmentReader) Close() error { return r.f.Close() }
