// Package sketch is Mercury's mergeable latency sketch: a log-bucket histogram with exactly
// the bucket layout of a Prometheus native histogram of schema 6. Bucket i holds values in
// (γ^(i-1), γ^i] with γ = 2^(2^-6) ≈ 1.0109; a quantile is answered with the geometric middle
// of its bucket, so its relative error is at most √γ − 1 ≈ 0.543 % (RelativeError), whatever
// the distribution and however many sketches were merged. Values ≤ 0 go to the zero bucket.
//
// Counts are integers (weighted spans in the units the caller chose), so merging is exact and
// independent of order: two sketches merged in any order encode to the same bytes.
package sketch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Schema is the Prometheus native-histogram schema of the layout.
const Schema = 6

// perOctave is the number of buckets per power of two.
const perOctave = 1 << Schema

// Growth is γ, the ratio of a bucket's upper bound to its lower bound.
var Growth = math.Exp2(1.0 / perOctave)

// RelativeError bounds |estimate − true| / true for any quantile.
var RelativeError = math.Sqrt(Growth) - 1

// bounds[j] is the upper bound, as a fraction in [0.5, 1), of the j-th bucket of an octave:
// the same table Prometheus uses for schema 6, so indexes agree with its buckets.
var bounds = func() [perOctave]float64 {
	var b [perOctave]float64
	for j := range b {
		b[j] = math.Exp2(float64(j)/perOctave - 1)
	}
	return b
}()

// Index is the bucket of v > 0: the i with γ^(i-1) < v ≤ γ^i.
func Index(v float64) int32 {
	frac, exp := math.Frexp(v) // v = frac · 2^exp, frac in [0.5, 1)
	// The first j with bounds[j] ≥ frac (binary search over the 64 bounds of an octave).
	lo, hi := 0, perOctave
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bounds[m] < frac {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return int32(lo) + int32(exp-1)*perOctave
}

// UpperBound is γ^i, the upper bound of bucket i.
func UpperBound(i int32) float64 { return math.Exp2(float64(i) / perOctave) }

// Sketch counts values in buckets. The zero value is an empty sketch. Buckets are dense from
// offset on: a latency series spans a few octaves, and an array add is what keeps phase 1
// above a million spans a second.
type Sketch struct {
	zero   int64   // values ≤ 0
	offset int32   // index of counts[0]
	counts []int64 // counts[k] is bucket offset+k
	total  int64
}

// Add counts v with weight w (w > 0).
func (s *Sketch) Add(v float64, w int64) {
	s.total += w
	if v <= 0 {
		s.zero += w
		return
	}
	s.addBucket(Index(v), w)
}

func (s *Sketch) addBucket(i int32, w int64) {
	if len(s.counts) == 0 {
		if cap(s.counts) == 0 {
			// A latency distribution spans a few octaves: start with room for two, so most
			// sketches never reallocate (lower values shift up within the room).
			s.counts = make([]int64, 0, 2*perOctave)
		}
		s.offset = i
		s.counts = append(s.counts[:0], w)
		return
	}
	switch {
	case i < s.offset:
		// Grow downwards with headroom: a latency distribution fills in from its first
		// value outwards, and growing one bucket at a time would copy on every new low.
		grow, old := max(int(s.offset-i), len(s.counts)/2, 8), len(s.counts)
		if old+grow <= cap(s.counts) { // shift up within the storage (a recycled sketch's)
			s.counts = s.counts[:old+grow]
			copy(s.counts[grow:], s.counts[:old])
			clear(s.counts[:grow])
		} else {
			n := make([]int64, old+grow, 2*(old+grow))
			copy(n[grow:], s.counts)
			s.counts = n
		}
		s.offset -= int32(grow)
	case int(i-s.offset) >= len(s.counts):
		need := int(i-s.offset) + 1
		if need > cap(s.counts) {
			n := make([]int64, len(s.counts), max(need, 2*cap(s.counts), 16))
			copy(n, s.counts)
			s.counts = n
		}
		old := len(s.counts)
		s.counts = s.counts[:need]
		clear(s.counts[old:])
	}
	s.counts[i-s.offset] += w
}

// Merge adds every count of o to s.
func (s *Sketch) Merge(o *Sketch) {
	s.zero += o.zero
	s.total += o.total
	if len(o.counts) == 0 {
		return
	}
	if len(s.counts) == 0 {
		s.offset = o.offset
		s.counts = append(s.counts[:0], o.counts...)
		return
	}
	s.cover(min(s.offset, o.offset), max(s.end(), o.end()))
	base := o.offset - s.offset
	for k, c := range o.counts {
		s.counts[base+int32(k)] += c
	}
}

func (s *Sketch) end() int32 { return s.offset + int32(len(s.counts)) }

// cover makes the dense counts span buckets [lo, hi), keeping what they hold, in one move
// or one allocation (with a quarter of headroom for the merges to come).
func (s *Sketch) cover(lo, hi int32) {
	if lo >= s.offset && hi <= s.end() {
		return
	}
	n, shift, old := int(hi-lo), int(s.offset-lo), len(s.counts)
	if n <= cap(s.counts) {
		s.counts = s.counts[:n]
		copy(s.counts[shift:], s.counts[:old])
		clear(s.counts[:shift])
		clear(s.counts[shift+old:])
	} else {
		c := make([]int64, n, n+n/4)
		copy(c[shift:], s.counts)
		s.counts = c
	}
	s.offset = lo
}

// Reset empties s and keeps its storage.
func (s *Sketch) Reset() { *s = Sketch{counts: s.counts[:0]} }

// Total is the sum of the weights added.
func (s *Sketch) Total() int64 { return s.total }

// Quantile estimates the q-quantile (0 ≤ q ≤ 1) by nearest rank: the value of rank
// max(1, ⌈q·Total⌉) in weighted order, as the geometric middle of its bucket (0 in the zero
// bucket). An empty sketch answers NaN.
func (s *Sketch) Quantile(q float64) float64 {
	if s.total == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	rank := Rank(q, s.total)
	cum := s.zero
	if cum >= rank {
		return 0
	}
	for k, c := range s.counts {
		cum += c
		if cum >= rank {
			i := s.offset + int32(k)
			return math.Exp2((float64(i) - 0.5) / perOctave)
		}
	}
	return UpperBound(s.offset + int32(len(s.counts)) - 1) // unreachable when counts sum to total
}

// Rank is the nearest rank of the q-quantile among total weight: max(1, ⌈q·total⌉), at most
// total. Batch recomputations use it to pick the true value the sketch estimates.
func Rank(q float64, total int64) int64 {
	q = min(max(q, 0), 1)
	r := int64(math.Ceil(q * float64(total)))
	return min(max(r, 1), total)
}

// Buckets calls fn for every non-empty bucket in increasing order (the zero bucket is
// reported by Zero), for serving the sketch as a native histogram.
func (s *Sketch) Buckets(fn func(index int32, count int64)) {
	for k, c := range s.counts {
		if c != 0 {
			fn(s.offset+int32(k), c)
		}
	}
}

// Zero is the weight of values ≤ 0.
func (s *Sketch) Zero() int64 { return s.zero }

// Encoding (all varints): version, zero count, number n of non-empty buckets; when n > 0,
// the first non-empty index (zig-zag), the width from it to the last non-empty one, then
// the first count and, per further bucket, its index delta and count. Only non-empty
// buckets are written, so equal sketches encode to equal bytes; the width lets Decode size
// the dense counts once.
const encodingVersion = 1

// AppendBinary appends the encoding of s to dst.
func (s *Sketch) AppendBinary(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, encodingVersion)
	dst = binary.AppendUvarint(dst, uint64(s.zero))
	n, lo, hi := 0, -1, -1
	for k, c := range s.counts {
		if c != 0 {
			if n == 0 {
				lo = k
			}
			n, hi = n+1, k
		}
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	if n == 0 {
		return dst
	}
	dst = binary.AppendVarint(dst, int64(s.offset)+int64(lo))
	dst = binary.AppendUvarint(dst, uint64(hi-lo+1))
	prev := lo
	for k := lo; k <= hi; k++ {
		c := s.counts[k]
		if c == 0 {
			continue
		}
		if k != lo {
			dst = binary.AppendUvarint(dst, uint64(k-prev))
		}
		prev = k
		dst = binary.AppendUvarint(dst, uint64(c))
	}
	return dst
}

// ErrCorrupt is returned for bytes that are not a sketch encoding.
var ErrCorrupt = errors.New("sketch: corrupt encoding")

// maxSpan bounds the bucket range a decoded sketch may cover (values from 2^-64 to 2^64),
// so hostile bytes cannot make Decode allocate without limit.
const maxSpan = 128 * perOctave

// Decode replaces s with the sketch encoded in b. It is on the query path (a day of
// minutes is thousands of sketches), hence the inlined one-byte varints.
func (s *Sketch) Decode(b []byte) error {
	s.Reset()
	r := reader{b: b}
	if v := r.uvarint(); v != encodingVersion {
		if r.err != nil {
			return r.err
		}
		return fmt.Errorf("%w: version %d", ErrCorrupt, v)
	}
	s.zero = int64(r.uvarint())
	s.total = s.zero
	n := r.uvarint()
	if n == 0 || r.err != nil {
		return r.end(s)
	}
	first, width := r.varint(), r.uvarint()
	switch {
	case r.err != nil:
		return r.err
	case n > uint64(len(r.b)) || width < n || width > maxSpan || first < -maxSpan || first > maxSpan:
		return fmt.Errorf("%w: %d buckets over %d from %d", ErrCorrupt, n, width, first)
	}
	s.offset = int32(first)
	if cap(s.counts) >= int(width) {
		s.counts = s.counts[:width]
		clear(s.counts)
	} else {
		s.counts = make([]int64, width)
	}
	k, rb := uint64(0), r.b
	for j := uint64(0); j < n; j++ {
		if j > 0 {
			d, ok := uvarint(&rb)
			if !ok || d == 0 || d >= width-k {
				return fmt.Errorf("%w: bucket delta", ErrCorrupt)
			}
			k += d
		}
		c, ok := uvarint(&rb)
		if !ok || c == 0 || c > math.MaxInt64 {
			return fmt.Errorf("%w: bucket count", ErrCorrupt)
		}
		s.counts[k] = int64(c)
		s.total += int64(c)
	}
	if k != width-1 {
		return fmt.Errorf("%w: width %d, last bucket at %d", ErrCorrupt, width, k)
	}
	r.b = rb
	return r.end(s)
}

// uvarint reads a varint from *b, one-byte values without a call.
func uvarint(b *[]byte) (uint64, bool) {
	if len(*b) > 0 && (*b)[0] < 0x80 {
		v := uint64((*b)[0])
		*b = (*b)[1:]
		return v, true
	}
	v, n := binary.Uvarint(*b)
	if n <= 0 {
		return 0, false
	}
	*b = (*b)[n:]
	return v, true
}

func (r *reader) end(s *Sketch) error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(r.b))
	}
	if s.zero < 0 || s.total < 0 {
		return fmt.Errorf("%w: negative count", ErrCorrupt)
	}
	return nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: truncated", ErrCorrupt)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: truncated", ErrCorrupt)
		return 0
	}
	r.b = r.b[n:]
	return v
}
