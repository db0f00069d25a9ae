package schemas_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/schemas/schemastest"
)

// writeOCF builds a container of blocks of spans with the schemas helpers.
func writeOCF(blocks [][]schemas.Span) []byte {
	sync := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	out := schemas.AppendOCFHeader(nil, schemas.Current(schemas.NameSpan).JSON(), sync)
	for _, b := range blocks {
		var data []byte
		for i := range b {
			data = schemas.AppendSpan(data, &b[i])
		}
		out = schemas.AppendOCFBlock(out, len(b), data, sync)
	}
	return out
}

func TestOCFReadByGoavro(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	var blocks [][]schemas.Span
	var want []schemas.Span
	for i := 0; i < 5; i++ {
		var b []schemas.Span
		for j := 0; j < 1+i*3; j++ {
			b = append(b, schemastest.Span(r, 3))
		}
		blocks = append(blocks, b)
		want = append(want, b...)
	}
	ocf, err := goavro.NewOCFReader(bytes.NewReader(writeOCF(blocks)))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for ocf.Scan() {
		native, err := ocf.Read()
		if err != nil {
			t.Fatal(err)
		}
		var s schemas.Span
		if err := schemas.FromNative(native, &s); err != nil {
			t.Fatal(err)
		}
		if s.SpanID != want[n].SpanID || s.Operation != want[n].Operation {
			t.Fatalf("record %d: got %v want %v", n, s.SpanID, want[n].SpanID)
		}
		n++
	}
	if ocf.Err() != nil || n != len(want) {
		t.Fatalf("goavro read %d of %d: %v", n, len(want), ocf.Err())
	}
}

func readAllBlocks(data []byte) (blocks int, err error) {
	br := bufio.NewReader(bytes.NewReader(data))
	h, err := schemas.ReadOCFHeader(br)
	if err != nil {
		return 0, err
	}
	for {
		_, _, err := schemas.ReadOCFBlock(br, &h, nil)
		if err == io.EOF {
			return blocks, nil
		}
		if err != nil {
			return blocks, err
		}
		blocks++
	}
}

func TestOCFTornAndCorrupt(t *testing.T) {
	full := writeOCF([][]schemas.Span{{{Service: "a"}}, {{Service: "b"}, {Service: "c"}}, {{Service: "d"}}})
	if n, err := readAllBlocks(full); err != nil || n != 3 {
		t.Fatalf("intact file: %d blocks, %v", n, err)
	}
	// Every cut inside the last block is a torn tail after two good blocks.
	lastStart := len(writeOCF([][]schemas.Span{{{Service: "a"}}, {{Service: "b"}, {Service: "c"}}}))
	for cut := lastStart + 1; cut < len(full); cut++ {
		n, err := readAllBlocks(full[:cut])
		if n != 2 || !errors.Is(err, schemas.ErrTornBlock) {
			t.Fatalf("cut at %d: %d blocks, %v; want 2 and ErrTornBlock", cut, n, err)
		}
	}
	bad := append([]byte{}, full...)
	bad[len(bad)-1] ^= 0xff // sync marker of the last block
	if n, err := readAllBlocks(bad); n != 2 || !errors.Is(err, schemas.ErrCorrupt) {
		t.Fatalf("bad sync: %d blocks, %v", n, err)
	}
	if _, err := readAllBlocks([]byte("garbage that is not avro")); !errors.Is(err, schemas.ErrCorrupt) {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := readAllBlocks(full[:3]); !errors.Is(err, schemas.ErrTornBlock) {
		t.Fatalf("truncated header: %v", err)
	}
	huge := append(full[:lastStart:lastStart], 0x02, 0xfe, 0xff, 0xff, 0xff, 0x0f) // size ~2 GiB
	if _, err := readAllBlocks(huge); !errors.Is(err, schemas.ErrCorrupt) {
		t.Fatalf("huge block size: %v", err)
	}
}
