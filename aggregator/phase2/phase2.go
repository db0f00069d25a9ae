// Package phase2 is the pure core of aggregator phase 2: merging partials into minute points
// exactly once.
//
// Phase 1 emits each partial tagged with its source partition p and the first offset F of
// the range it folded; ranges of one partition follow each other, and a crashed phase 1
// replays its last range in full before the next, so the partials of one series from p reach
// phase 2 (whose partitions are keyed by series id) with F never decreasing. A point
// therefore needs, per source partition, only the latest F it merged and which windows of
// the minute it merged from that range: a partial with a smaller F, or with the same F and
// a window already marked, is a copy. That state travels with the point into the store in
// the same write, so it is exactly as durable as the sums it protects.
package phase2

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/sketch"
	"github.com/mercury-apm/mercury/schemas"
)

// Minute is the minute (Unix seconds) a partial's window falls in.
func Minute(p *schemas.MetricPartial) int64 {
	ms := p.WindowStartUnixMilli
	m := ms / 60000
	if ms%60000 != 0 && ms < 0 {
		m--
	}
	return m * 60
}

// ErrBadPartial marks a partial that can never be merged (a permanent error).
var ErrBadPartial = errors.New("phase2: bad partial")

// Decode checks a partial and returns its stats and window index within its minute.
func Decode(p *schemas.MetricPartial, st *metric.Stats) (window uint8, err error) {
	wm := int64(p.WindowMillis)
	if wm <= 0 || 60000%wm != 0 || wm < 60000/64 {
		return 0, fmt.Errorf("%w: window of %d ms does not divide a minute into at most 64", ErrBadPartial, wm)
	}
	if p.SketchSchema != sketch.Schema {
		return 0, fmt.Errorf("%w: sketch schema %d, want %d", ErrBadPartial, p.SketchSchema, sketch.Schema)
	}
	if p.SeriesID == "" || p.FirstOffset < 0 || p.LastOffset < p.FirstOffset || p.SourcePartition < 0 {
		return 0, fmt.Errorf("%w: series %q range %d..%d of partition %d", ErrBadPartial, p.SeriesID, p.FirstOffset, p.LastOffset, p.SourcePartition)
	}
	sum, err := metric.Uint128From(p.SumUnits)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadPartial, err)
	}
	st.Reset()
	if err := st.Sketch.Decode(p.Sketch); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadPartial, err)
	}
	st.Count, st.Errors, st.Sum, st.Min, st.Max = p.CountUnits, p.ErrorUnits, sum, p.MinNano, p.MaxNano
	if st.Count <= 0 || st.Errors < 0 || st.Errors > st.Count || st.Sketch.Total() != st.Count || st.Min > st.Max || st.Min < 0 {
		return 0, fmt.Errorf("%w: inconsistent counts", ErrBadPartial)
	}
	off := p.WindowStartUnixMilli - Minute(p)*1000
	return uint8(off / wm), nil
}

// LabelsOf are the labels a partial names.
func LabelsOf(p *schemas.MetricPartial) metric.Labels {
	return metric.Labels{Domain: p.Domain, Service: p.Service, Operation: p.Operation, Kind: p.Kind, Host: p.Host, Peer: p.Peer, Dyed: p.Dyed}
}

// Stream names what a point merges from: a source partition of phase 1 and, for a
// service's __other__ point (which merges many series), the series the partial was folded
// for (0 for the point's own series). The partials of one stream arrive with the first offset
// never decreasing, which is what Merge relies on.
type Stream struct {
	Partition int32
	Origin    uint64
}

// OriginOf is the stream origin of a partial of series id merged into another series' point.
func OriginOf(seriesID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(seriesID))
	return h.Sum64() | 1 // never 0, the point's own series
}

// source is what a point merged from one stream: the first offset of the latest range, and
// the windows of the minute merged from it.
type source struct {
	stream  Stream
	first   int64
	windows uint64
}

func cmpStream(a, b Stream) int {
	return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Origin, b.Origin))
}

// Point is one series' minute being merged.
type Point struct {
	Stats   metric.Stats
	sources []source // sorted by stream
}

// Merge adds a partial's stats unless the point already holds them; it reports whether it
// merged.
func (p *Point) Merge(st Stream, first int64, window uint8, stats *metric.Stats) bool {
	i, found := slices.BinarySearchFunc(p.sources, st, func(s source, t Stream) int { return cmpStream(s.stream, t) })
	bit := uint64(1) << window
	switch {
	case !found:
		p.sources = slices.Insert(p.sources, i, source{st, first, bit})
	case first < p.sources[i].first:
		return false
	case first == p.sources[i].first:
		if p.sources[i].windows&bit != 0 {
			return false
		}
		p.sources[i].windows |= bit
	default:
		p.sources[i].first, p.sources[i].windows = first, bit
	}
	p.Stats.Merge(stats)
	return true
}

// AppendState appends the merge bookkeeping, stored with the point: per stream, partition,
// origin, first offset and windows (varints).
func (p *Point) AppendState(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(p.sources)))
	for _, s := range p.sources {
		dst = binary.AppendUvarint(dst, uint64(s.stream.Partition))
		dst = binary.AppendUvarint(dst, s.stream.Origin)
		dst = binary.AppendUvarint(dst, uint64(s.first))
		dst = binary.AppendUvarint(dst, s.windows)
	}
	return dst
}

// ErrCorruptState is returned for stored bookkeeping that does not decode.
var ErrCorruptState = errors.New("phase2: corrupt point state")

// DecodeState restores the bookkeeping AppendState wrote.
func (p *Point) DecodeState(b []byte) error {
	p.sources = p.sources[:0]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	n, ok := next()
	if !ok || n > uint64(len(b)) {
		return ErrCorruptState
	}
	for range n {
		part, ok1 := next()
		origin, ok2 := next()
		first, ok3 := next()
		win, ok4 := next()
		if !ok1 || !ok2 || !ok3 || !ok4 || part > 1<<31-1 || first > 1<<63-1 {
			return ErrCorruptState
		}
		st := Stream{int32(part), origin}
		if k := len(p.sources); k > 0 && cmpStream(st, p.sources[k-1].stream) <= 0 {
			return ErrCorruptState
		}
		p.sources = append(p.sources, source{st, int64(first), win})
	}
	if len(b) != 0 {
		return ErrCorruptState
	}
	return nil
}
