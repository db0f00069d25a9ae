package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// The schema-specific Span codec. goavro's map-based API costs about 2 µs and 21 allocations
// per span; the spool writer must do a million spans a second on one core. TestSpanCodecMatches
// Goavro and FuzzSpanCodec prove this file byte-identical to goavro for the current Span schema.

// AppendSpan appends the Avro binary body of s.
func AppendSpan(dst []byte, s *Span) []byte {
	dst = append(dst, s.TraceID[:]...)
	dst = append(dst, s.SpanID[:]...)
	dst = append(dst, s.ParentSpanID[:]...)
	dst = appendString(dst, s.Domain)
	dst = appendString(dst, s.Service)
	dst = appendString(dst, s.Operation)
	dst = appendLong(dst, int64(s.Kind))
	dst = appendString(dst, s.Peer)
	dst = appendString(dst, s.Host)
	dst = appendLong(dst, s.StartUnixNano)
	dst = appendLong(dst, s.DurationNano)
	dst = appendLong(dst, int64(s.Status))
	dst = appendLong(dst, int64(s.StatusCode))
	dst = appendString(dst, s.ErrorType)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.SampleRate))
	dst = appendBool(dst, s.Dyed)
	dst = appendStringMap(dst, s.BusinessKeys)
	dst = appendStringMap(dst, s.Tags)
	if len(s.Events) > 0 {
		dst = appendLong(dst, int64(len(s.Events)))
		for i := range s.Events {
			e := &s.Events[i]
			dst = appendLong(dst, e.TimeUnixNano)
			dst = appendString(dst, e.Name)
			dst = appendStringMap(dst, e.Attributes)
		}
	}
	dst = append(dst, 0)
	return appendString(dst, s.AgentVersion)
}

func appendLong(dst []byte, v int64) []byte {
	return binary.AppendUvarint(dst, uint64(v<<1)^uint64(v>>63))
}

func appendString(dst []byte, s string) []byte {
	dst = appendLong(dst, int64(len(s)))
	return append(dst, s...)
}

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func appendStringMap(dst []byte, kvs []KV) []byte {
	if len(kvs) > 0 {
		dst = appendLong(dst, int64(len(kvs)))
		for _, kv := range kvs {
			dst = appendString(dst, kv.Key)
			dst = appendString(dst, kv.Value)
		}
	}
	return append(dst, 0)
}

// ErrCorrupt wraps every decoding failure of hostile or damaged bytes.
var ErrCorrupt = errors.New("corrupt Avro data")

// DecodeSpan decodes one Span body (current schema) into s, reusing its slices, and returns the
// bytes after it. Lengths are checked against the input, so hostile input cannot make it
// allocate more than the input's size.
func DecodeSpan(b []byte, s *Span) ([]byte, error) {
	d := decoder{b: b}
	return d.span(s)
}

// DecodeSpanAliased is DecodeSpan with every string pointing into b instead of copied: no
// allocation per string, for readers that look at a span and let it go (the aggregator).
// The strings are valid only while b is neither modified nor reused; copy what is kept.
func DecodeSpanAliased(b []byte, s *Span) ([]byte, error) {
	d := decoder{b: b, alias: true}
	return d.span(s)
}

func (d *decoder) span(s *Span) ([]byte, error) {
	b := d.b
	d.fixed(s.TraceID[:])
	d.fixed(s.SpanID[:])
	d.fixed(s.ParentSpanID[:])
	s.Domain = d.string()
	s.Service = d.string()
	s.Operation = d.string()
	s.Kind = SpanKind(d.enum(len(spanKindSymbols)))
	s.Peer = d.string()
	s.Host = d.string()
	s.StartUnixNano = d.long()
	s.DurationNano = d.long()
	s.Status = Status(d.enum(len(statusSymbols)))
	s.StatusCode = d.int()
	s.ErrorType = d.string()
	s.SampleRate = d.double()
	s.Dyed = d.bool()
	s.BusinessKeys = d.stringMap(s.BusinessKeys[:0])
	s.Tags = d.stringMap(s.Tags[:0])
	s.Events = s.Events[:0]
	for n := d.blockLen(); n > 0 && d.err == nil; n = d.blockLen() {
		for ; n > 0 && d.err == nil; n-- {
			var e SpanEvent
			e.TimeUnixNano = d.long()
			e.Name = d.string()
			e.Attributes = d.stringMap(nil)
			s.Events = append(s.Events, e)
		}
	}
	s.AgentVersion = d.string()
	if d.err != nil {
		return b, d.err
	}
	return d.b, nil
}

type decoder struct {
	b     []byte
	err   error
	alias bool // strings point into b
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) long() int64 {
	u, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return int64(u>>1) ^ -int64(u&1)
}

func (d *decoder) int() int32 {
	v := d.long()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail("int out of range")
		return 0
	}
	return int32(v)
}

func (d *decoder) enum(symbols int) int {
	v := d.long()
	if v < 0 || v >= int64(symbols) {
		d.fail("enum index out of range")
		return 0
	}
	return int(v)
}

func (d *decoder) fixed(dst []byte) {
	if len(d.b) < len(dst) {
		d.fail("short fixed")
		return
	}
	copy(dst, d.b)
	d.b = d.b[len(dst):]
}

func (d *decoder) string() string {
	n := d.long()
	if n < 0 || n > int64(len(d.b)) {
		d.fail("string length out of range")
		return ""
	}
	var s string
	if d.alias {
		s = unsafe.String(unsafe.SliceData(d.b), n)
	} else {
		s = string(d.b[:n])
	}
	d.b = d.b[n:]
	return s
}

func (d *decoder) double() float64 {
	if len(d.b) < 8 {
		d.fail("short double")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *decoder) bool() bool {
	if len(d.b) < 1 || d.b[0] > 1 {
		d.fail("bad boolean")
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

// blockLen reads an array/map block count. A negative count is followed by the block's byte
// size (the spec allows it; goavro never writes it). Each item takes at least one byte, which
// bounds the count by what is left.
func (d *decoder) blockLen() int64 {
	n := d.long()
	if n < 0 {
		n = -n
		d.long()
	}
	if n > int64(len(d.b)) {
		d.fail("block count out of range")
		return 0
	}
	return n
}

func (d *decoder) stringMap(kvs []KV) []KV {
	for n := d.blockLen(); n > 0 && d.err == nil; n = d.blockLen() {
		for ; n > 0 && d.err == nil; n-- {
			k := d.string()
			kvs = append(kvs, KV{k, d.string()})
		}
	}
	return kvs
}

// SkipSpan walks one Span body without decoding it and returns the bytes after it. The shipper
// uses it to split a spool block into records at no allocation.
func SkipSpan(b []byte) ([]byte, error) {
	d := decoder{b: b}
	d.skip(16 + 8 + 8)
	d.skipStrings(3) // domain, service, operation
	d.long()         // kind
	d.skipStrings(2) // peer, host
	d.long()         // start
	d.long()         // duration
	d.long()         // status
	d.long()         // status_code
	d.skipStrings(1) // error_type
	d.skip(8)        // sample_rate
	d.bool()
	d.skipMap() // business_keys
	d.skipMap() // tags
	for n := d.blockLen(); n > 0 && d.err == nil; n = d.blockLen() {
		for ; n > 0 && d.err == nil; n-- {
			d.long()
			d.skipStrings(1)
			d.skipMap()
		}
	}
	d.skipStrings(1) // agent_version
	if d.err != nil {
		return b, d.err
	}
	return d.b, nil
}

func (d *decoder) skip(n int) {
	if len(d.b) < n {
		d.fail("short input")
		return
	}
	d.b = d.b[n:]
}

func (d *decoder) skipStrings(k int) {
	for ; k > 0; k-- {
		n := d.long()
		if n < 0 || n > int64(len(d.b)) {
			d.fail("string length out of range")
			return
		}
		d.b = d.b[n:]
	}
}

func (d *decoder) skipMap() {
	for n := d.blockLen(); n > 0 && d.err == nil; n = d.blockLen() {
		d.skipStrings(int(2 * n))
	}
}
