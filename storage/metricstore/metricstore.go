// Package metricstore is the metric storage contract: one point per series and minute,
// upserted with a revision, read by series and time, with a catalog of the series (for
// services, operations and topology edges) and retention. Backends (storage/pebblestore,
// storage/hbasestore) implement it; storage/storetest checks them all alike.
package metricstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/sketch"
	"github.com/mercury-apm/mercury/schemas"
)

// Point is one series over one minute.
type Point struct {
	SeriesID string
	Minute   int64 // Unix seconds, a multiple of 60
	Revision int32 // bumped by the writer on every upsert
	Stats    metric.Stats
	// State is the writer's bookkeeping (the aggregator's dedup state), opaque to the store
	// and written atomically with the point.
	State []byte
}

// Key names a point.
type Key struct {
	SeriesID string
	Minute   int64
}

// Series is a series id with its labels.
type Series struct {
	ID     string
	Labels metric.Labels
}

// Filter selects series; empty fields match anything.
type Filter struct {
	Domain, Service, Operation, Host string
	// Edges selects edge series (caller → callee) instead of operation series.
	Edges bool
	// Dyed selects the shadow series of load-test traffic instead of real traffic.
	Dyed bool
}

// Match reports whether the filter selects l.
func (f Filter) Match(l metric.Labels) bool {
	return l.IsEdge() == f.Edges && l.Dyed == f.Dyed &&
		(f.Domain == "" || f.Domain == l.Domain) && (f.Service == "" || f.Service == l.Service) &&
		(f.Operation == "" || f.Operation == l.Operation) && (f.Host == "" || f.Host == l.Host)
}

// Upsert is a point with the labels of its series.
type Upsert struct {
	Labels metric.Labels
	Point  Point
}

// Store holds metric points. Implementations are safe for concurrent use.
type Store interface {
	// Upsert replaces the points (same series and minute) and registers their series for
	// the points' days. Each point is written atomically with its State; nil means durable.
	Upsert(ctx context.Context, points []Upsert) error
	// Get returns the stored points of keys; absent ones are missing from the map.
	Get(ctx context.Context, keys []Key) (map[Key]Point, error)
	// Range calls fn with the points of a series whose minute is in [start, end), in
	// minute order. The Point passed to fn is valid only during the call.
	Range(ctx context.Context, seriesID string, start, end time.Time, fn func(*Point) error) error
	// Series lists the series matching f that have points on a day overlapping [start, end).
	Series(ctx context.Context, f Filter, start, end time.Time) ([]Series, error)
	// DropBefore removes whole UTC days that ended at or before cutoff.
	DropBefore(ctx context.Context, cutoff time.Time) error
	Close() error
}

// Record is the mercury.metrics.1m record of a point of the series labelled l: the exact
// unit fields, and the same in spans and ns as floats.
func Record(l metric.Labels, p *Point) *schemas.MetricPoint {
	st := &p.Stats
	return &schemas.MetricPoint{
		SeriesID: p.SeriesID, Domain: l.Domain, Service: l.Service, Operation: l.Operation, Kind: l.Kind,
		Peer: l.Peer, Host: l.Host, Dyed: l.Dyed, MinuteUnix: p.Minute,
		Count: st.Spans(), Errors: float64(st.Errors) / metric.Units, SumNano: st.Sum.Float() / metric.Units,
		MinNano: st.Min, MaxNano: st.Max, Sketch: st.Sketch.AppendBinary(nil), Revision: p.Revision,
		CountUnits: st.Count, ErrorUnits: st.Errors, SumUnits: st.Sum.Bytes(), SketchSchema: sketch.Schema,
	}
}

// ErrCorrupt is returned for stored bytes that do not decode (a defect or foreign data).
var ErrCorrupt = errors.New("metricstore: corrupt value")

// Value encoding, shared by the backends: version, revision (uvarint), stats length
// (uvarint), stats, then the state to the end.
const valueVersion = 1

// AppendValue appends the stored form of p (without its key).
func AppendValue(dst []byte, p *Point) []byte {
	dst = append(dst, valueVersion)
	dst = binary.AppendUvarint(dst, uint64(uint32(p.Revision)))
	st := p.Stats.AppendBinary(nil)
	dst = binary.AppendUvarint(dst, uint64(len(st)))
	dst = append(dst, st...)
	return append(dst, p.State...)
}

// DecodeValue fills p's revision, stats and state from b (State is copied).
func DecodeValue(b []byte, p *Point) error {
	if len(b) == 0 || b[0] != valueVersion {
		return fmt.Errorf("%w: version", ErrCorrupt)
	}
	b = b[1:]
	rev, n := binary.Uvarint(b)
	if n <= 0 || rev > 1<<31-1 {
		return fmt.Errorf("%w: revision", ErrCorrupt)
	}
	b = b[n:]
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return fmt.Errorf("%w: stats length", ErrCorrupt)
	}
	b = b[n:]
	if err := p.Stats.Decode(b[:l]); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	p.Revision = int32(rev)
	p.State = append(p.State[:0], b[l:]...)
	return nil
}

// Labels encoding for the series catalog: kind, dyed, then the five strings with lengths.

// AppendLabels appends the stored form of l.
func AppendLabels(dst []byte, l metric.Labels) []byte {
	dst = append(dst, byte(l.Kind))
	if l.Dyed {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	for _, s := range []string{l.Domain, l.Service, l.Operation, l.Host, l.Peer} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// DecodeLabels reads what AppendLabels wrote.
func DecodeLabels(b []byte) (metric.Labels, error) {
	var l metric.Labels
	if len(b) < 2 || b[1] > 1 {
		return l, fmt.Errorf("%w: labels", ErrCorrupt)
	}
	l.Kind, l.Dyed = metric.Kind(b[0]), b[1] == 1
	if !l.Kind.Valid() {
		return l, fmt.Errorf("%w: kind %d", ErrCorrupt, b[0])
	}
	b = b[2:]
	var f [5]string
	for i := range f {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return l, fmt.Errorf("%w: labels", ErrCorrupt)
		}
		f[i], b = string(b[k:k+int(n)]), b[k+int(n):]
	}
	if len(b) != 0 {
		return l, fmt.Errorf("%w: labels trailing bytes", ErrCorrupt)
	}
	l.Domain, l.Service, l.Operation, l.Host, l.Peer = f[0], f[1], f[2], f[3], f[4]
	return l, nil
}
