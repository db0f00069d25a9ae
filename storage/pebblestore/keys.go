package pebblestore

import (
	"bytes"
	"encoding/binary"

	"github.com/mercury-apm/mercury/schemas"
)

// Key layout (DESIGN.md "Collector"), inside one database per UTC day:
//
//	t/<trace_id 16>/<span_id 8>                          → Avro span body
//	i/bk/<key>=<value>/<ts 8>/<trace_id 16>/<span_id 8>  → entry value
//	i/op/<service>/<operation>/<ts>/<trace_id>/<span_id> → entry value
//	i/svc/<service>/<ts>/<trace_id>/<span_id>            → entry value
//	i/err/<service>/<ts>/<trace_id>/<span_id>            → entry value
//	i/exc/<error_type>/<ts>/<trace_id>/<span_id>         → entry value
//	i/ev/<event name>/<ts>/<trace_id>/<span_id>          → entry value (once per name and span)
//
// Dyed spans use the same layout behind the shadow prefix "x/".
//
// Differences from DESIGN.md, and why:
//   - Index keys end with the span id: two spans of one trace with the same key and start
//     (coarse clocks) stay two entries, so duration and error filters see both.
//   - The entry value is span id, duration and an error flag (17 bytes) instead of empty:
//     duration and errors-only filters are answered from the index without reading the span.
//   - i/svc/ indexes a service without an operation: a reverse scan over it is newest-first,
//     which a scan over i/op/<service>/ (sorted by operation first) is not.
//   - Strings are escaped (0x00→00 01, '/'→00 02, '='→00 03) so a value holding '/' or '='
//     cannot forge another key's prefix.
//   - ts is the span start in Unix nanoseconds, big-endian with the sign bit flipped, so
//     byte order is time order and newest-first is a reverse scan.
const (
	tailLen    = 8 + 1 + 16 + 1 + 8 // ts / trace / span
	entryLen   = 8 + 8 + 1          // span id, duration, flags
	flagError  = 1
	shadowPfx  = "x/"
	rowPfx     = "t/"
	rowKeyLen  = len(rowPfx) + 16 + 1 + 8
	rowPfxLen  = len(rowPfx) + 16 + 1
	idxBK      = "i/bk/"
	idxOp      = "i/op/"
	idxSvc     = "i/svc/"
	idxErr     = "i/err/"
	idxExc     = "i/exc/"
	idxEv      = "i/ev/"
	escapeByte = 0x00
)

// keyspace returns the prefix of a span's keyspace.
func keyspace(dyed bool) string {
	if dyed {
		return shadowPfx
	}
	return ""
}

func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0x00:
			dst = append(dst, escapeByte, 1)
		case '/':
			dst = append(dst, escapeByte, 2)
		case '=':
			dst = append(dst, escapeByte, 3)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// unescape reverses appendEscaped.
func unescape(b []byte) string {
	if bytes.IndexByte(b, escapeByte) < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == escapeByte && i+1 < len(b) {
			i++
			switch b[i] {
			case 1:
				c = 0x00
			case 2:
				c = '/'
			case 3:
				c = '='
			}
		}
		out = append(out, c)
	}
	return string(out)
}

func appendTS(dst []byte, unixNano int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(unixNano)^(1<<63))
}

func decodeTS(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

// rowPrefix is t/<trace_id>/ in the given keyspace.
func rowPrefix(dst []byte, ks string, id schemas.TraceID) []byte {
	dst = append(dst, ks...)
	dst = append(dst, rowPfx...)
	dst = append(dst, id[:]...)
	return append(dst, '/')
}

func rowKey(dst []byte, ks string, s *schemas.Span) []byte {
	return append(rowPrefix(dst, ks, s.TraceID), s.SpanID[:]...)
}

// Index key prefixes, each ending with '/' before the tail.
func bkPrefix(dst []byte, ks string, kv schemas.KV) []byte {
	dst = append(append(dst, ks...), idxBK...)
	dst = appendEscaped(dst, kv.Key)
	dst = append(dst, '=')
	return append(appendEscaped(dst, kv.Value), '/')
}

func opPrefix(dst []byte, ks, service, operation string) []byte {
	dst = append(append(dst, ks...), idxOp...)
	dst = append(appendEscaped(dst, service), '/')
	return append(appendEscaped(dst, operation), '/')
}

func svcPrefix(dst []byte, ks, kind, service string) []byte {
	dst = append(append(dst, ks...), kind...)
	return append(appendEscaped(dst, service), '/')
}

func appendTail(dst []byte, s *schemas.Span) []byte {
	dst = append(appendTS(dst, s.StartUnixNano), '/')
	dst = append(append(dst, s.TraceID[:]...), '/')
	return append(dst, s.SpanID[:]...)
}

// tail is an index key's fixed-size suffix.
type tail struct {
	ts    int64
	trace schemas.TraceID
	span  schemas.SpanID
}

func parseTail(key []byte) (tail, bool) {
	if len(key) < tailLen {
		return tail{}, false
	}
	b := key[len(key)-tailLen:]
	var t tail
	t.ts = decodeTS(b[:8])
	copy(t.trace[:], b[9:25])
	copy(t.span[:], b[26:])
	return t, true
}

func appendEntry(dst []byte, s *schemas.Span, isErr bool) []byte {
	dst = append(dst, s.SpanID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.DurationNano))
	var f byte
	if isErr {
		f |= flagError
	}
	return append(dst, f)
}

func parseEntry(v []byte) (durationNano int64, isErr bool, ok bool) {
	if len(v) != entryLen {
		return 0, false, false
	}
	return int64(binary.BigEndian.Uint64(v[8:16])), v[16]&flagError != 0, true
}

// split gives Pebble the t/<trace_id>/ prefix of row keys, so bloom filters answer "this day
// has no span of that trace" without reading data blocks: GetTrace probes every day.
func split(k []byte) int {
	p := 0
	if len(k) >= len(shadowPfx) && string(k[:len(shadowPfx)]) == shadowPfx {
		p = len(shadowPfx)
	}
	if len(k) == p+rowKeyLen && string(k[p:p+len(rowPfx)]) == rowPfx {
		return p + rowPfxLen
	}
	return len(k)
}

// prefixEnd returns the smallest key greater than every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
