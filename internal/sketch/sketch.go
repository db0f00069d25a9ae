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
	// Grow once to the union of both ranges, then add.
	s.addBucket(o.offset, 0)
	s.addBucket(o.offset+int32(len(o.counts))-1, 0)
	base := o.offset - s.offset
	for k, c := range o.counts {
		s.counts[base+int32(k)] += c
	}
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

// Encoding (all varints): version, zero count, number of non-empty buckets, then per bucket
// the index delta from the previous one (the first is absolute, zig-zag) and the count.
// Only non-empty buckets are written, so equal sketches encode to equal bytes.
const encodingVersion = 1

// AppendBinary appends the encoding of s to dst.
func (s *Sketch) AppendBinary(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, encodingVersion)
	dst = binary.AppendUvarint(dst, uint64(s.zero))
	n := 0
	for _, c := range s.counts {
		if c != 0 {
			n++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	prev := int32(0)
	first := true
	for k, c := range s.counts {
		if c == 0 {
			continue
		}
		i := s.offset + int32(k)
		if first {
			dst = binary.AppendVarint(dst, int64(i))
			first = false
		} else {
			dst = binary.AppendUvarint(dst, uint64(i-prev))
		}
		prev = i
		dst = binary.AppendUvarint(dst, uint64(c))
	}
	return dst
}

// ErrCorrupt is returned for bytes that are not a sketch encoding.
var ErrCorrupt = errors.New("sketch: corrupt encoding")

// maxSpan bounds the bucket range a decoded sketch may cover (values from 2^-64 to 2^64),
// so hostile bytes cannot make Decode allocate without limit.
const maxSpan = 128 * perOctave

// Decode replaces s with the sketch encoded in b.
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
	if r.err == nil && n > uint64(len(b)) {
		return fmt.Errorf("%w: %d buckets in %d bytes", ErrCorrupt, n, len(b))
	}
	var i int64
	for k := uint64(0); k < n && r.err == nil; k++ {
		if k == 0 {
			i = r.varint()
		} else {
			d := r.uvarint()
			if d == 0 || d > maxSpan {
				return fmt.Errorf("%w: bucket delta %d", ErrCorrupt, d)
			}
			i += int64(d)
		}
		c := int64(r.uvarint())
		if r.err != nil {
			break
		}
		if c <= 0 || i < -maxSpan || i > maxSpan || (len(s.counts) > 0 && i-int64(s.offset) >= maxSpan) {
			return fmt.Errorf("%w: bucket %d count %d", ErrCorrupt, i, c)
		}
		s.addBucket(int32(i), c)
		s.total += c
	}
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
