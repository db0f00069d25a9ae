package agent

import (
	"encoding/hex"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"

	"github.com/mercury-apm/mercury/schemas"
)

// W3C Trace Context. Mercury's own fields travel in a tracestate member under the key "mercury":
// r = sample rate, d = dyed (load test), o = origin domain, e.g. "mercury=r:0.25;d:1;o:shop".
// A malformed traceparent never errors: the request simply starts a new root trace; invalid
// tracestate members are dropped one by one.

const (
	// HeaderTraceparent and HeaderTracestate are the W3C header names.
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	// HeaderDye marks load-test traffic at the edge (the gateway and the HTTP middleware).
	HeaderDye = "X-Mercury-Dye"

	canonicalTraceparent = "Traceparent"
	canonicalTracestate  = "Tracestate"

	stateKey        = "mercury"
	maxStateMembers = 32
)

// SpanContext is what crosses process boundaries.
type SpanContext struct {
	TraceID      schemas.TraceID
	SpanID       schemas.SpanID
	SampleRate   float64 // the rate the sampling decision was taken at
	Sampled      bool
	Dyed         bool   // load-test traffic
	OriginDomain string // domain that took the sampling decision
	// OtherState is the other vendors' tracestate members as Extract kept them (valid, one per
	// key, at most 31, comma-separated), passed on in order. Inject writes it as it is.
	OtherState string
}

// IsValid reports whether both ids are set.
func (sc SpanContext) IsValid() bool { return !sc.TraceID.IsZero() && !sc.SpanID.IsZero() }

// ParseTraceparent parses a traceparent header. ok is false for anything malformed.
func ParseTraceparent(h string) (sc SpanContext, ok bool) {
	// version-traceid-parentid-flags: 2+1+32+1+16+1+2 = 55 characters for version 00; later
	// versions may append fields after another dash.
	if len(h) < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return sc, false
	}
	ver, okv := hexByte(h[0:2])
	if !okv || ver == 0xff || (ver == 0 && len(h) != 55) || (len(h) > 55 && h[55] != '-') {
		return sc, false
	}
	if !lowerHex(h[3:35]) || !lowerHex(h[36:52]) {
		return sc, false
	}
	hex.Decode(sc.TraceID[:], []byte(h[3:35]))
	hex.Decode(sc.SpanID[:], []byte(h[36:52]))
	flags, okf := hexByte(h[53:55])
	if !okf || !sc.IsValid() {
		return SpanContext{}, false
	}
	sc.Sampled = flags&1 == 1
	sc.SampleRate = 1
	return sc, true
}

// FormatTraceparent renders version 00.
func FormatTraceparent(sc SpanContext) string {
	var b [traceparentLen]byte
	return string(appendTraceparent(b[:0], sc))
}

const traceparentLen = 55

func appendTraceparent(b []byte, sc SpanContext) []byte {
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, sc.TraceID[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sc.SpanID[:])
	if sc.Sampled {
		return append(b, "-01"...)
	}
	return append(b, "-00"...)
}

// Tracestate follows W3C Trace Context level 1 (https://www.w3.org/TR/trace-context-1/):
//
//	list             = list-member 0*31( OWS "," OWS list-member )
//	list-member      = (key "=" value) / OWS
//	key              = simple-key / multi-tenant-key
//	simple-key       = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
//	multi-tenant-key = tenant-id "@" system-id
//	tenant-id        = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
//	system-id        = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
//	value            = 0*255(chr) nblk-chr
//	nblk-chr         = %x21-2B / %x2D-3C / %x3E-7E
//	chr              = %x20 / nblk-chr
//
// Several tracestate field lines are one list, in order (RFC 7230 §3.2.2). Extract keeps the
// valid part of the list and drops the rest member by member (spec §4.3: invalid entries MAY be
// discarded), because tracers such as OpenTelemetry Go discard a whole list over one bad member,
// Mercury's included, while dropping the whole list here would delete other vendors' valid state:
//   - members whose key or value breaks the grammar above;
//   - a key seen before: the leftmost member wins. Tracers move the member they update to the
//     left, so the leftmost is the latest position (spec §3.3.1.4: one entry per key);
//   - members beyond the 32nd, Mercury's own counted: the rightmost go (spec §3.3.1.5).
//
// Empty and whitespace-only members are allowed and skipped. Inject writes Mercury's member
// first, then the kept members in their order, joined by bare commas, on one line.

// applyTracestate reads Mercury's member from the tracestate field lines and keeps the other
// vendors' valid members in sc.OtherState. It allocates only when the kept members are not back
// to back in one line with bare commas between them (as Mercury and OpenTelemetry write them):
// those are a substring of that line, otherwise they are joined once.
func applyTracestate(sc *SpanContext, lines ...string) {
	if len(lines) == 0 {
		return // before zeroing kept
	}
	var kept [maxStateMembers - 1]string
	n, own := 0, false
	// While contiguous, the kept members are lines[runLine][runStart:runEnd].
	runLine, runStart, runEnd, contiguous := 0, 0, 0, true
	for li, line := range lines {
		for pos := 0; pos <= len(line); {
			start, stop := pos, len(line)
			if i := strings.IndexByte(line[pos:], ','); i >= 0 {
				stop = pos + i
			}
			pos = stop + 1
			for start < stop && isOWS(line[start]) {
				start++
			}
			for stop > start && isOWS(line[stop-1]) {
				stop--
			}
			key, value, ok := strings.Cut(line[start:stop], "=")
			if !ok || !validKey(key) || !validValue(value) {
				continue // empty, whitespace-only or invalid
			}
			if key == stateKey {
				if !own {
					own = true
					applyOwnMember(sc, value)
				}
				continue
			}
			if n == len(kept) || hasKey(kept[:n], key) {
				continue
			}
			if n == 0 {
				runLine, runStart = li, start
			} else if li != runLine || start != runEnd+1 {
				contiguous = false
			}
			runEnd = stop
			kept[n] = line[start:stop]
			n++
		}
	}
	switch {
	case n == 0:
	case contiguous:
		sc.OtherState = lines[runLine][runStart:runEnd]
	default:
		sc.OtherState = strings.Join(kept[:n], ",")
	}
}

// applyOwnMember reads Mercury's fields, each a letter, ':' and a value, separated by ';'.
// Values out of range and unknown fields are ignored, never trusted.
func applyOwnMember(sc *SpanContext, v string) {
	for v != "" {
		f := v
		if i := strings.IndexByte(v, ';'); i >= 0 {
			f, v = v[:i], v[i+1:]
		} else {
			v = ""
		}
		if len(f) < 2 || f[1] != ':' {
			continue
		}
		switch val := f[2:]; f[0] {
		case 'r':
			if r, err := strconv.ParseFloat(val, 64); err == nil && r > 0 && r <= 1 {
				sc.SampleRate = r
			}
		case 'd':
			sc.Dyed = val == "1"
		case 'o':
			if schemas.ValidName(val) {
				sc.OriginDomain = val
			}
		}
	}
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// hasKey reports whether one of the members has key k.
func hasKey(members []string, k string) bool {
	for _, m := range members {
		if len(m) > len(k) && m[len(k)] == '=' && m[:len(k)] == k {
			return true
		}
	}
	return false
}

func validKey(k string) bool {
	tenant, system, multi := strings.Cut(k, "@")
	if !multi {
		return validKeyPart(k, 256, false)
	}
	return validKeyPart(tenant, 241, true) && validKeyPart(system, 14, false)
}

// validKeyPart checks a simple key, tenant id or system id: 1 to max characters, the first a
// lowercase letter (or a digit, for a tenant id), the others also digits, '_', '-', '*', '/'.
func validKeyPart(s string, max int, digitFirst bool) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	if c := s[0]; !('a' <= c && c <= 'z' || digitFirst && '0' <= c && c <= '9') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '*' || c == '/') {
			return false
		}
	}
	return true
}

// validValue checks 1 to 256 printable ASCII characters but ',' and '=', the last not a space.
func validValue(v string) bool {
	if len(v) == 0 || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

// FormatTracestate puts Mercury's member first (the spec wants the updated member leftmost).
func FormatTracestate(sc SpanContext) string {
	var b [128]byte // Mercury's member always fits: only other vendors' state can overflow it
	return string(appendTracestate(b[:0], sc))
}

// appendTracestate writes Mercury's member, which any conforming tracer keeps: the key is a
// simple key, and every byte of the value is a value character (the rate's digits, '.', 'e',
// '+', '-', or NaN or Inf; ':' and ';'; an origin that passes ValidName), at most 97 of them.
func appendTracestate(b []byte, sc SpanContext) []byte {
	b = append(b, stateKey+"=r:"...)
	b = strconv.AppendFloat(b, sc.SampleRate, 'g', -1, 64)
	if sc.Dyed {
		b = append(b, ";d:1"...)
	}
	if schemas.ValidName(sc.OriginDomain) {
		b = append(b, ";o:"...)
		b = append(b, sc.OriginDomain...)
	}
	if sc.OtherState != "" {
		b = append(b, ',')
		b = append(b, sc.OtherState...)
	}
	return b
}

// Carrier is the header access propagation needs; http.Header satisfies it.
type Carrier interface {
	Get(key string) string
	Set(key, value string)
}

// ValuesCarrier is a Carrier that returns every field line of a header, so that Extract can
// combine tracestate sent on several lines, as the spec requires; from a plain Carrier it reads
// the first line only. http.Header and HeaderCarrier satisfy it.
type ValuesCarrier interface {
	Carrier
	Values(key string) []string
}

// HeaderCarrier is an http.Header that reads and writes the W3C headers under their
// canonical keys directly: http.Header.Get would canonicalize the lowercase names on every
// request, an allocation each. Other keys follow net/http's rules.
type HeaderCarrier http.Header

// Get returns the first value of k.
func (h HeaderCarrier) Get(k string) string {
	if v := h[canonicalHeaderKey(k)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Values returns every value of k.
func (h HeaderCarrier) Values(k string) []string { return h[canonicalHeaderKey(k)] }

// Set replaces the values of k.
func (h HeaderCarrier) Set(k, v string) { h[canonicalHeaderKey(k)] = []string{v} }

func canonicalHeaderKey(k string) string {
	switch k {
	case HeaderTraceparent:
		return canonicalTraceparent
	case HeaderTracestate:
		return canonicalTracestate
	}
	return http.CanonicalHeaderKey(k)
}

// Extract reads a remote span context from headers. ok is false when there is none or it is
// malformed; the caller then starts a new root.
func Extract(c Carrier) (SpanContext, bool) {
	sc, ok := ParseTraceparent(c.Get(HeaderTraceparent))
	if !ok {
		return SpanContext{}, false
	}
	switch c := c.(type) {
	case HeaderCarrier:
		applyTracestate(&sc, c[canonicalTracestate]...)
	case ValuesCarrier:
		applyTracestate(&sc, c.Values(HeaderTracestate)...)
	default:
		applyTracestate(&sc, c.Get(HeaderTracestate))
	}
	return sc, true
}

// Inject writes sc into headers. Both values are rendered into one string; into a
// HeaderCarrier they also share one value slice, so a propagation costs two allocations.
func Inject(sc SpanContext, c Carrier) {
	if !sc.IsValid() {
		return
	}
	var buf [traceparentLen + 128]byte
	s := string(appendTracestate(appendTraceparent(buf[:0], sc), sc))
	tp, ts := s[:traceparentLen], s[traceparentLen:]
	if h, ok := c.(HeaderCarrier); ok {
		v := []string{tp, ts}
		h[canonicalTraceparent], h[canonicalTracestate] = v[:1:1], v[1:] // capped: an append reallocates
		return
	}
	c.Set(HeaderTraceparent, tp)
	c.Set(HeaderTracestate, ts)
}

func hexByte(s string) (byte, bool) {
	if !lowerHex(s) {
		return 0, false
	}
	v, _ := strconv.ParseUint(s, 16, 8)
	return byte(v), true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// originName is a domain as it travels as the tracestate origin, where it must pass ValidName:
// unchanged when it does. Otherwise (spaces, commas, non-ASCII, more than 64 bytes) its other
// bytes become '_', it is cut to 55 bytes and gets '-' and the 8 hex digits of its FNV-1a hash,
// so all services of one domain send the same origin and different domains rarely share one
// ("交易" and "支付" would both be "______" without the hash).
func originName(domain string) string {
	if domain == "" || schemas.ValidName(domain) {
		return domain
	}
	b := make([]byte, 0, 64)
	for i := 0; i < len(domain) && len(b) < 55; i++ {
		c := domain[i]
		if !schemas.ValidNameByte(c) {
			c = '_'
		}
		b = append(b, c)
	}
	h := fnv.New32a()
	h.Write([]byte(domain))
	b = append(b, '-')
	return string(hex.AppendEncode(b, h.Sum(nil)))
}
