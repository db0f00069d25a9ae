package schemas

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Avro Object Container Files. The agent writes them block by block with one write call each
// (AppendOCFHeader, AppendOCFBlock) so a crash can only tear the last block; ReadOCFBlock tells
// a torn tail (ErrTornBlock) from damage in the middle (ErrCorrupt).

var ocfMagic = []byte{'O', 'b', 'j', 1}

// MaxOCFBlock bounds one block's size; larger sizes are treated as corruption, not allocated.
const MaxOCFBlock = 64 << 20

// ErrTornBlock means the file ends inside a block: the writer crashed, or is still writing.
var ErrTornBlock = errors.New("torn OCF block")

// AppendOCFHeader appends a container header (codec null) for schemaJSON and sync marker.
func AppendOCFHeader(dst []byte, schemaJSON string, sync [16]byte) []byte {
	dst = append(dst, ocfMagic...)
	dst = appendLong(dst, 2)
	dst = appendString(dst, "avro.codec")
	dst = appendString(dst, "null")
	dst = appendString(dst, "avro.schema")
	dst = appendString(dst, schemaJSON)
	dst = append(dst, 0)
	return append(dst, sync[:]...)
}

// AppendOCFBlock appends one block of count records whose encoded bodies are data.
func AppendOCFBlock(dst []byte, count int, data []byte, sync [16]byte) []byte {
	dst = appendLong(dst, int64(count))
	dst = appendLong(dst, int64(len(data)))
	dst = append(dst, data...)
	return append(dst, sync[:]...)
}

// OCFHeader is a parsed container header.
type OCFHeader struct {
	Schema *Schema // writer schema, registered so its records decode
	Codec  string  // null or deflate
	Sync   [16]byte
	Len    int64 // header bytes; the first block starts here
}

// OCFBlock is one block: Count records, Data their (decompressed) bodies.
type OCFBlock struct {
	Count int64
	Data  []byte
}

// ByteReader is what the OCF readers need: bufio.Reader and bytes.Reader both fit.
type ByteReader interface {
	io.Reader
	io.ByteReader
}

// ReadOCFHeader parses the header at the start of r.
func ReadOCFHeader(r ByteReader) (OCFHeader, error) {
	var h OCFHeader
	cr := &countingReader{r: r}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(cr, magic); err != nil {
		return h, fmt.Errorf("%w: OCF header: %v", ErrTornBlock, err)
	}
	if !bytes.Equal(magic, ocfMagic) {
		return h, fmt.Errorf("%w: not an Avro container file", ErrCorrupt)
	}
	meta := map[string][]byte{}
	for {
		n, err := readLong(cr)
		if err != nil {
			return h, err
		}
		if n == 0 {
			break
		}
		if n < 0 {
			n = -n
			if _, err := readLong(cr); err != nil {
				return h, err
			}
		}
		for ; n > 0; n-- {
			k, err := readBytes(cr, 1<<20)
			if err != nil {
				return h, err
			}
			v, err := readBytes(cr, 16<<20)
			if err != nil {
				return h, err
			}
			meta[string(k)] = v
		}
	}
	if _, err := io.ReadFull(cr, h.Sync[:]); err != nil {
		return h, fmt.Errorf("%w: OCF sync marker: %v", ErrTornBlock, err)
	}
	h.Codec = string(meta["avro.codec"])
	if h.Codec == "" {
		h.Codec = "null"
	}
	if h.Codec != "null" && h.Codec != "deflate" {
		return h, fmt.Errorf("OCF codec %q not supported (null, deflate)", h.Codec)
	}
	s, err := Register(string(meta["avro.schema"]))
	if err != nil {
		return h, fmt.Errorf("%w: OCF schema: %v", ErrCorrupt, err)
	}
	h.Schema, h.Len = s, cr.n
	return h, nil
}

// ReadOCFBlock reads the next block into buf (reused when large enough) and reports the bytes
// consumed. io.EOF means a clean end at a block boundary.
func ReadOCFBlock(r ByteReader, h *OCFHeader, buf []byte) (OCFBlock, int64, error) {
	cr := &countingReader{r: r}
	count, err := readLong(cr)
	if err != nil {
		if cr.n == 0 && errors.Is(err, ErrTornBlock) {
			return OCFBlock{}, 0, io.EOF
		}
		return OCFBlock{}, cr.n, err
	}
	size, err := readLong(cr)
	if err != nil {
		return OCFBlock{}, cr.n, err
	}
	if count < 0 || size < 0 || size > MaxOCFBlock || count > size+1 {
		return OCFBlock{}, cr.n, fmt.Errorf("%w: block count %d size %d", ErrCorrupt, count, size)
	}
	if int64(cap(buf)) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(cr, buf); err != nil {
		return OCFBlock{}, cr.n, fmt.Errorf("%w: %v", ErrTornBlock, err)
	}
	var sync [16]byte
	if _, err := io.ReadFull(cr, sync[:]); err != nil {
		return OCFBlock{}, cr.n, fmt.Errorf("%w: %v", ErrTornBlock, err)
	}
	if sync != h.Sync {
		return OCFBlock{}, cr.n, fmt.Errorf("%w: sync marker mismatch", ErrCorrupt)
	}
	if h.Codec == "deflate" {
		buf, err = io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(buf)), MaxOCFBlock))
		if err != nil {
			return OCFBlock{}, cr.n, fmt.Errorf("%w: deflate: %v", ErrCorrupt, err)
		}
	}
	return OCFBlock{Count: count, Data: buf}, cr.n, nil
}

// OCFBlockHeader parses a block header (record count, byte size) at the start of b, which
// need hold only the header. ok is false when b does not start with a plausible one.
func OCFBlockHeader(b []byte) (count, size int64, n int, ok bool) {
	r := bytes.NewReader(b)
	var err error
	if count, err = readLong(r); err != nil {
		return 0, 0, 0, false
	}
	if size, err = readLong(r); err != nil {
		return 0, 0, 0, false
	}
	if count < 0 || size < 0 || size > MaxOCFBlock || count > size+1 {
		return 0, 0, 0, false
	}
	return count, size, len(b) - r.Len(), true
}

type countingReader struct {
	r ByteReader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

func readLong(r io.ByteReader) (int64, error) {
	u, err := binary.ReadUvarint(r)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, fmt.Errorf("%w: %v", ErrTornBlock, err)
		}
		return 0, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return int64(u>>1) ^ -int64(u&1), nil
}

func readBytes(r ByteReader, max int64) ([]byte, error) {
	n, err := readLong(r)
	if err != nil {
		return nil, err
	}
	if n < 0 || n > max {
		return nil, fmt.Errorf("%w: length %d", ErrCorrupt, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTornBlock, err)
	}
	return b, nil
}

// SplitRecords appends to dst the body of each of the count records in a block written with
// schema s. Spans are walked without decoding; other records go through goavro.
func SplitRecords(s *Schema, data []byte, count int64, dst [][]byte) ([][]byte, error) {
	fast := s.Fingerprint == Current(NameSpan).Fingerprint
	for ; count > 0; count-- {
		var rest []byte
		var err error
		if fast {
			rest, err = SkipSpan(data)
		} else if _, rest, err = s.Codec.NativeFromBinary(data); err != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if err != nil {
			return dst, err
		}
		dst = append(dst, data[:len(data)-len(rest)])
		data = rest
	}
	if len(data) != 0 {
		return dst, fmt.Errorf("%w: %d bytes after the block's records", ErrCorrupt, len(data))
	}
	return dst, nil
}
