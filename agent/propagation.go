package agent

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"

	"github.com/mercury-apm/mercury/schemas"
)

// W3C Trace Context. Mercury's own fields travel in a tracestate entry under the key "mercury":
// r = sample rate, d = dyed (load test), o = origin domain, e.g. "mercury=r:0.25;d:1;o:shop".
// A malformed header never errors: the request simply starts a new root trace.

const (
	// HeaderTraceparent and HeaderTracestate are the W3C header names.
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	// HeaderDye marks load-test traffic at the edge (the gateway and the HTTP middleware).
	HeaderDye = "X-Mercury-Dye"

	canonicalTraceparent = "Traceparent"
	canonicalTracestate  = "Tracestate"

	stateKey        = "mercury"
	maxStateEntries = 32
)

// SpanContext is what crosses process boundaries.
type SpanContext struct {
	TraceID      schemas.TraceID
	SpanID       schemas.SpanID
	SampleRate   float64 // the rate the sampling decision was taken at
	Sampled      bool
	Dyed         bool   // load-test traffic
	OriginDomain string // domain that took the sampling decision
	OtherState   string // other vendors' tracestate entries, passed on untouched
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

// applyTracestate reads Mercury's entry and keeps the others. It allocates only to join more
// than four other entries.
func applyTracestate(sc *SpanContext, h string) {
	if h == "" {
		return
	}
	var buf [4]string
	others := buf[:0]
	for entry := range strings.SplitSeq(h, ",") {
		entry = strings.TrimSpace(entry)
		k, v, ok := strings.Cut(entry, "=")
		if !ok || k == "" {
			continue // invalid entries are dropped, as the spec allows
		}
		if k != stateKey {
			if len(others) < maxStateEntries-1 {
				others = append(others, entry)
			}
			continue
		}
		for f := range strings.SplitSeq(v, ";") {
			name, val, _ := strings.Cut(f, ":")
			switch name {
			case "r":
				if r, err := strconv.ParseFloat(val, 64); err == nil && r > 0 && r <= 1 {
					sc.SampleRate = r
				}
			case "d":
				sc.Dyed = val == "1"
			case "o":
				if schemas.ValidName(val) {
					sc.OriginDomain = val
				}
			}
		}
	}
	sc.OtherState = strings.Join(others, ",")
}

// FormatTracestate puts Mercury's entry first (the spec wants the updated entry leftmost).
func FormatTracestate(sc SpanContext) string {
	var b [128]byte // Mercury's entry always fits: only other vendors' state can overflow it
	return string(appendTracestate(b[:0], sc))
}

func appendTracestate(b []byte, sc SpanContext) []byte {
	b = append(b, stateKey+"=r:"...)
	b = strconv.AppendFloat(b, sc.SampleRate, 'g', -1, 64)
	if sc.Dyed {
		b = append(b, ";d:1"...)
	}
	if sc.OriginDomain != "" {
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
	applyTracestate(&sc, c.Get(HeaderTracestate))
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
