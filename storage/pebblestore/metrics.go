package pebblestore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebbledb"
)

var _ metricstore.Store = (*Store)(nil)

// Metric key layout, in the day database of the point's minute (DESIGN.md "Collector"):
//
//	m/<series_id>/<minute 8>  → metricstore value (revision, stats, writer state)
//	s/<series_id>             → labels (the day's series catalog)
//
// The series id is escaped like index strings; minute is Unix seconds, big-endian with the
// sign bit flipped, so a series' points are in time order. The catalog lives per day so that
// retention removes it with the points, and listing a time range reads only its days.
const (
	metricPfx = "m/"
	seriesPfx = "s/"
)

func metricPrefix(dst []byte, series string) []byte {
	dst = append(dst, metricPfx...)
	dst = appendEscaped(dst, series)
	return append(dst, '/')
}

func metricKey(dst []byte, series string, minute int64) []byte {
	return appendTS(metricPrefix(dst, series), minute)
}

func dayOfMinute(minute int64) int64 { return minute - ((minute%86400)+86400)%86400 }

// daysBetween lists the UTC days overlapping [start, end), oldest first.
func daysBetween(start, end time.Time) []int64 {
	var out []int64
	for d := dayOfMinute(start.Unix()); d < end.Unix(); d += 86400 {
		out = append(out, d)
	}
	return out
}

// Upsert writes the points and their series' catalog entries, one synced batch per day.
func (s *Store) Upsert(ctx context.Context, points []metricstore.Upsert) error {
	if len(points) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return retry.Retryable(err)
	}
	var days []int64
	for i := range points {
		if m := points[i].Point.Minute; m%60 != 0 {
			return retry.Permanent(fmt.Errorf("pebblestore: minute %d is not a multiple of 60", m))
		}
		if points[i].Point.SeriesID == "" {
			return retry.Permanent(errors.New("pebblestore: point without a series id"))
		}
		if d := dayOfMinute(points[i].Point.Minute); !slices.Contains(days, d) {
			days = append(days, d)
		}
	}
	if err := s.days.Ensure(days); err != nil {
		return err
	}
	return s.days.Read(func(v pebbledb.View) error {
		kv := kvPool.Get().(*sortedKVs)
		defer kvPool.Put(kv)
		var key, val []byte
		for _, d := range days {
			db := v.DB(d)
			if db == nil {
				continue // dropped by retention meanwhile: past retention anyway
			}
			kv.reset()
			for i := range points {
				u := &points[i]
				if dayOfMinute(u.Point.Minute) != d {
					continue
				}
				key = metricKey(key[:0], u.Point.SeriesID, u.Point.Minute)
				val = metricstore.AppendValue(val[:0], &u.Point)
				kv.put(key, val)
				key = append(append(key[:0], seriesPfx...), appendEscaped(nil, u.Point.SeriesID)...)
				kv.put(key, metricstore.AppendLabels(val[:0], u.Labels))
			}
			b := db.NewBatchWithSize(len(kv.arena) + 16*len(kv.recs))
			kv.sortInto(b)
			err := b.Commit(pebble.Sync)
			b.Close()
			if err != nil {
				return retry.Retryable(fmt.Errorf("pebblestore: commit: %w", err))
			}
		}
		return nil
	})
}

// Get reads the stored points of keys.
func (s *Store) Get(ctx context.Context, keys []metricstore.Key) (map[metricstore.Key]metricstore.Point, error) {
	out := map[metricstore.Key]metricstore.Point{}
	err := s.days.Read(func(v pebbledb.View) error {
		var key []byte
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				return retry.Retryable(err)
			}
			db := v.DB(dayOfMinute(k.Minute))
			if db == nil {
				continue
			}
			key = metricKey(key[:0], k.SeriesID, k.Minute)
			v, closer, err := db.Get(key)
			if errors.Is(err, pebble.ErrNotFound) {
				continue
			}
			if err != nil {
				return retry.Retryable(fmt.Errorf("pebblestore: get: %w", err))
			}
			p := metricstore.Point{SeriesID: k.SeriesID, Minute: k.Minute}
			err = metricstore.DecodeValue(v, &p)
			closer.Close()
			if err != nil {
				return retry.Permanent(fmt.Errorf("pebblestore: point %s@%d: %w", k.SeriesID, k.Minute, err))
			}
			out[k] = p
		}
		return nil
	})
	return out, err
}

// Range calls fn with the series' points in [start, end), oldest first.
func (s *Store) Range(ctx context.Context, seriesID string, start, end time.Time, fn func(*metricstore.Point) error) error {
	return s.days.Read(func(v pebbledb.View) error {
		p := metricstore.Point{SeriesID: seriesID}
		lo := metricKey(nil, seriesID, start.Unix())
		hi := metricKey(nil, seriesID, end.Unix())
		for _, d := range daysBetween(start, end) {
			db := v.DB(d)
			if db == nil {
				continue
			}
			it, err := db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: hi})
			if err != nil {
				return retry.Retryable(fmt.Errorf("pebblestore: range: %w", err))
			}
			for ok := it.First(); ok; ok = it.Next() {
				k := it.Key()
				p.Minute = decodeTS(k[len(k)-8:])
				if err := metricstore.DecodeValue(it.Value(), &p); err != nil {
					it.Close()
					return retry.Permanent(fmt.Errorf("pebblestore: point %s@%d: %w", seriesID, p.Minute, err))
				}
				if err := fn(&p); err != nil {
					it.Close()
					return err
				}
			}
			if err := it.Close(); err != nil {
				return retry.Retryable(fmt.Errorf("pebblestore: range: %w", err))
			}
		}
		return ctx.Err()
	})
}

// Series lists the catalogued series matching f on the days of [start, end).
func (s *Store) Series(ctx context.Context, f metricstore.Filter, start, end time.Time) ([]metricstore.Series, error) {
	var out []metricstore.Series
	seen := map[string]bool{}
	err := s.days.Read(func(v pebbledb.View) error {
		lo := []byte(seriesPfx)
		for _, d := range daysBetween(start, end) {
			db := v.DB(d)
			if db == nil {
				continue
			}
			it, err := db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
			if err != nil {
				return retry.Retryable(fmt.Errorf("pebblestore: series: %w", err))
			}
			for ok := it.First(); ok; ok = it.Next() {
				id := unescape(it.Key()[len(seriesPfx):])
				if seen[id] {
					continue
				}
				l, err := metricstore.DecodeLabels(it.Value())
				if err != nil {
					it.Close()
					return retry.Permanent(fmt.Errorf("pebblestore: series %s: %w", id, err))
				}
				if f.Match(l) {
					seen[id] = true
					out = append(out, metricstore.Series{ID: id, Labels: l})
				}
			}
			if err := it.Close(); err != nil {
				return retry.Retryable(fmt.Errorf("pebblestore: series: %w", err))
			}
		}
		return ctx.Err()
	})
	return out, err
}
