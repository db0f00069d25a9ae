// Package metric holds what the aggregator, the metric store and the metrics API share: the
// labels of a series and its id, span weights, and Stats, the mergeable aggregate of a window
// or a minute.
//
// Every quantity is an integer so that merging is exact and independent of order: a minute
// merged from partials in any order, or after any crash and replay, is bit-identical to a
// batch recomputation over the same spans. Weights are in Units (1/1024 of a span): a span
// sampled at rate r weighs round(1024/r) units; weighted duration sums are 128-bit.
package metric

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"

	"github.com/mercury-apm/mercury/internal/sketch"
	"github.com/mercury-apm/mercury/schemas"
)

// Units is the weight of one unsampled span.
const Units = 1024

// minRate bounds the weight of one span (1/minRate spans) so sums cannot overflow.
const minRate = 1e-6

// Weight is the weight in units of a span sampled at rate: round(Units/rate). Rates outside
// (0, 1] (an agent that did not say) count the span once.
func Weight(rate float64) int64 {
	if !(rate > 0 && rate <= 1) { // also NaN
		return Units
	}
	return int64(math.Round(Units / max(rate, minRate)))
}

// Kind is a span kind (re-exported so store codecs need not import schemas).
type Kind = schemas.SpanKind

// Other replaces the operation and host of series beyond a service's cap.
const Other = "__other__"

// Labels identify a series. Operation series have Peer empty; edge series (caller → callee,
// for the topology) have Operation and Host empty and Peer the callee. Dyed spans (load
// tests) go to shadow series, Dyed true, which the API leaves out unless asked.
type Labels struct {
	Domain    string
	Service   string
	Operation string
	Kind      schemas.SpanKind
	Host      string
	Peer      string
	Dyed      bool
}

// IsEdge reports whether the series counts calls from Service to Peer.
func (l Labels) IsEdge() bool { return l.Peer != "" }

// Overflow is the series a series of l's service is counted under beyond a series cap:
// operation and host Other (edges: peer Other).
func (l Labels) Overflow() Labels {
	if l.IsEdge() {
		l.Peer = Other
	} else {
		l.Operation, l.Host = Other, Other
	}
	return l
}

// IsOverflow reports whether l is an overflow series.
func (l Labels) IsOverflow() bool {
	return l.Peer == Other || (l.Operation == Other && l.Host == Other)
}

// SeriesOf is the operation series of a span.
func SeriesOf(s *schemas.Span) Labels {
	return Labels{Domain: s.Domain, Service: s.Service, Operation: s.Operation, Kind: s.Kind, Host: s.Host, Dyed: s.Dyed}
}

// EdgeOf is the edge series of a span, ok false when the span is no outgoing call with a
// named callee (databases and other uninstrumented peers become virtual nodes this way).
func EdgeOf(s *schemas.Span) (Labels, bool) {
	if s.Peer == "" || (s.Kind != schemas.KindClient && s.Kind != schemas.KindProducer) {
		return Labels{}, false
	}
	return Labels{Domain: s.Domain, Service: s.Service, Kind: s.Kind, Peer: s.Peer, Dyed: s.Dyed}, true
}

// ID is the series id: 16 hex digits of FNV-1a over the labels. It is stable across
// processes and versions (it keys Kafka messages and store rows).
func (l Labels) ID() string { return l.id(-1) }

// OverflowID is the id of an __other__ series owned by one aggregator partition: overflow of
// different partitions must not be written by different owners under one id.
func (l Labels) OverflowID(partition int) string { return l.id(partition) }

func (l Labels) id(salt int) string {
	h := fnv.New64a()
	var buf [16]byte
	for _, s := range []string{l.Domain, l.Service, l.Operation, l.Host, l.Peer} {
		h.Write(binary.AppendUvarint(buf[:0], uint64(len(s))))
		h.Write([]byte(s))
	}
	flags := byte(l.Kind) << 1
	if l.Dyed {
		flags |= 1
	}
	h.Write([]byte{flags})
	if salt >= 0 {
		h.Write(binary.AppendUvarint(buf[:0], uint64(salt)))
	}
	return hex.EncodeToString(h.Sum(buf[:0]))
}

// Uint128 is an unsigned 128-bit sum.
type Uint128 struct{ Hi, Lo uint64 }

// Add adds v.
func (u *Uint128) Add(v Uint128) {
	var c uint64
	u.Lo, c = bits.Add64(u.Lo, v.Lo, 0)
	u.Hi += v.Hi + c
}

// Mul64 is a·b as 128 bits.
func Mul64(a, b uint64) Uint128 {
	hi, lo := bits.Mul64(a, b)
	return Uint128{hi, lo}
}

// Float is u as a float64 (rounded).
func (u Uint128) Float() float64 { return float64(u.Hi)*0x1p64 + float64(u.Lo) }

// Bytes is u big-endian, the wire form.
func (u Uint128) Bytes() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), u.Hi)
	return binary.BigEndian.AppendUint64(b, u.Lo)
}

// Uint128From reads the 16-byte big-endian form; empty bytes are zero.
func Uint128From(b []byte) (Uint128, error) {
	switch len(b) {
	case 0:
		return Uint128{}, nil
	case 16:
		return Uint128{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}, nil
	}
	return Uint128{}, fmt.Errorf("metric: 128-bit sum of %d bytes", len(b))
}

// Stats aggregates spans: weighted count and errors (units), the weighted duration sum
// (units × ns), the unweighted minimum and maximum duration (ns) and a latency sketch
// (counts in units, values in ns). The zero value is empty.
type Stats struct {
	Count  int64
	Errors int64
	Sum    Uint128
	Min    int64 // meaningful when Count > 0
	Max    int64
	Sketch sketch.Sketch
}

// Add counts one span of duration d (ns; negative counts as 0) and weight w.
func (s *Stats) Add(d int64, w int64, isErr bool) {
	d = max(d, 0)
	if s.Count == 0 || d < s.Min {
		s.Min = d
	}
	if s.Count == 0 || d > s.Max {
		s.Max = d
	}
	s.Count += w
	if isErr {
		s.Errors += w
	}
	s.Sum.Add(Mul64(uint64(d), uint64(w)))
	s.Sketch.Add(float64(d), w)
}

// Merge adds o to s.
func (s *Stats) Merge(o *Stats) {
	if o.Count == 0 {
		return
	}
	if s.Count == 0 || o.Min < s.Min {
		s.Min = o.Min
	}
	if s.Count == 0 || o.Max > s.Max {
		s.Max = o.Max
	}
	s.Count += o.Count
	s.Errors += o.Errors
	s.Sum.Add(o.Sum)
	s.Sketch.Merge(&o.Sketch)
}

// Reset empties s and keeps the sketch's storage.
func (s *Stats) Reset() {
	sk := s.Sketch
	sk.Reset()
	*s = Stats{Sketch: sk}
}

// Spans is the weighted count in spans.
func (s *Stats) Spans() float64 { return float64(s.Count) / Units }

// ErrorRate is errors / count (0 when empty).
func (s *Stats) ErrorRate() float64 {
	if s.Count == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Count)
}

// MeanNanos is the weighted mean duration (NaN when empty).
func (s *Stats) MeanNanos() float64 {
	if s.Count == 0 {
		return math.NaN()
	}
	return s.Sum.Float() / float64(s.Count)
}

// Quantile estimates the q-quantile of the duration in ns, within sketch.RelativeError,
// clamped to [Min, Max] (which are exact).
func (s *Stats) Quantile(q float64) float64 {
	if s.Count == 0 {
		return math.NaN()
	}
	return min(max(s.Sketch.Quantile(q), float64(s.Min)), float64(s.Max))
}

// Encoding of Stats (the metric store's value): version, then varints count, errors, min,
// max, the 16-byte sum, then the sketch's own encoding.
const statsVersion = 1

// AppendBinary appends the encoding of s.
func (s *Stats) AppendBinary(dst []byte) []byte {
	dst = append(dst, statsVersion)
	dst = binary.AppendUvarint(dst, uint64(s.Count))
	dst = binary.AppendUvarint(dst, uint64(s.Errors))
	dst = binary.AppendUvarint(dst, uint64(s.Min))
	dst = binary.AppendUvarint(dst, uint64(s.Max))
	dst = binary.BigEndian.AppendUint64(dst, s.Sum.Hi)
	dst = binary.BigEndian.AppendUint64(dst, s.Sum.Lo)
	return s.Sketch.AppendBinary(dst)
}

// ErrCorrupt is returned for bytes that are no Stats encoding.
var ErrCorrupt = errors.New("metric: corrupt stats")

// Decode replaces s with the Stats encoded in b.
func (s *Stats) Decode(b []byte) error {
	if len(b) == 0 || b[0] != statsVersion {
		return fmt.Errorf("%w: version", ErrCorrupt)
	}
	b = b[1:]
	var v [4]uint64
	for i := range v {
		x, n := binary.Uvarint(b)
		if n <= 0 || x > math.MaxInt64 {
			return fmt.Errorf("%w: truncated", ErrCorrupt)
		}
		v[i], b = x, b[n:]
	}
	if len(b) < 16 {
		return fmt.Errorf("%w: truncated sum", ErrCorrupt)
	}
	s.Count, s.Errors, s.Min, s.Max = int64(v[0]), int64(v[1]), int64(v[2]), int64(v[3])
	s.Sum = Uint128{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
	if err := s.Sketch.Decode(b[16:]); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if s.Errors > s.Count || s.Sketch.Total() != s.Count || s.Min > s.Max {
		return fmt.Errorf("%w: inconsistent counts", ErrCorrupt)
	}
	return nil
}
