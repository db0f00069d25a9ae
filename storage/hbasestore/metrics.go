package hbasestore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/hbaserest"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

var _ metricstore.Store = (*MetricStore)(nil)

// Metric layout: table mercury:metrics, row = series id + "," + the hour (Unix seconds, ten
// digits, so a series' rows sort by time), family p, qualifier = the minute of the hour (two
// digits), value = the metricstore value. One point is one cell, so it is written
// atomically with its writer state. The series catalog is table mercury:metric_series,
// row = UTC day + "," + series id, family l, qualifier l, value = the labels: listing a time
// range scans only its days. The separator is a comma, not a slash: row keys travel in URL
// path segments (a row delete), where an escaped slash is not reliably passed through.
const (
	pointFamily   = "p"
	catalogFamily = "l"
	dayLayout     = "2006-01-02"
)

// MetricsConfig configures a MetricStore. Only URL is required.
type MetricsConfig struct {
	URL string
	// Table and CatalogTable default to mercury:metrics and mercury:metric_series.
	Table, CatalogTable string
	// TTL of the families when the store creates the tables (default 400 days): a backstop
	// behind DropBefore, which deletes whole days.
	TTL        time.Duration
	HTTPClient *http.Client
	Backoff    retry.Backoff
	// MaxRowsPerGet bounds the rows of one multiget (default 150).
	MaxRowsPerGet int
}

// MetricStore implements metricstore.Store over the HBase REST gateway.
type MetricStore struct {
	c              *hbaserest.Client
	hc             *http.Client // nil: the client's own
	table, catalog string
	maxRows        int
}

// NewMetrics checks the gateway, creates the tables if missing, and returns the store.
func NewMetrics(ctx context.Context, cfg MetricsConfig) (*MetricStore, error) {
	if cfg.Table == "" {
		cfg.Table = "mercury:metrics"
	}
	if cfg.CatalogTable == "" {
		cfg.CatalogTable = "mercury:metric_series"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 400 * 24 * time.Hour
	}
	if cfg.MaxRowsPerGet <= 0 {
		cfg.MaxRowsPerGet = 150
	}
	c, err := hbaserest.New(cfg.URL, cfg.HTTPClient, cfg.Backoff)
	if err != nil {
		return nil, err
	}
	m := &MetricStore{c: c, hc: cfg.HTTPClient, table: cfg.Table, catalog: cfg.CatalogTable, maxRows: cfg.MaxRowsPerGet}
	if err := c.EnsureTable(ctx, cfg.Table, pointFamily, cfg.TTL); err != nil {
		return nil, err
	}
	if err := c.EnsureTable(ctx, cfg.CatalogTable, catalogFamily, cfg.TTL); err != nil {
		return nil, err
	}
	return m, nil
}

// Close releases the idle connections of a client the caller passed in.
func (m *MetricStore) Close() error {
	if m.hc != nil {
		m.hc.CloseIdleConnections()
	}
	return nil
}

func pointRow(series string, minute int64) string {
	return series + "," + fmt.Sprintf("%010d", minute-((minute%3600)+3600)%3600)
}

func pointColumn(minute int64) []byte {
	return fmt.Appendf(nil, "%s:%02d", pointFamily, ((minute%3600)+3600)%3600/60)
}

// checkSeries refuses ids that would forge another row key or path.
func checkSeries(id string) error {
	if id == "" || strings.ContainsAny(id, ",/\x00") {
		return retry.Permanent(fmt.Errorf("hbasestore: series id %q (empty, or holding ',' or '/')", id))
	}
	return nil
}

func dayOf(minute int64) time.Time { return time.Unix(minute, 0).UTC().Truncate(24 * time.Hour) }

// Upsert writes the catalog entries, then the points, each table in one batch request.
func (m *MetricStore) Upsert(ctx context.Context, points []metricstore.Upsert) error {
	if len(points) == 0 {
		return nil
	}
	var cat, pts hbaserest.CellSet
	catRow, ptRow := map[string]int{}, map[string]int{}
	add := func(cs *hbaserest.CellSet, idx map[string]int, row string, c hbaserest.Cell) {
		i, ok := idx[row]
		if !ok {
			i = len(cs.Row)
			idx[row] = i
			cs.Row = append(cs.Row, hbaserest.Row{Key: []byte(row)})
		}
		cs.Row[i].Cell = append(cs.Row[i].Cell, c)
	}
	for i := range points {
		u := &points[i]
		if err := checkSeries(u.Point.SeriesID); err != nil {
			return err
		}
		if u.Point.Minute%60 != 0 {
			return retry.Permanent(fmt.Errorf("hbasestore: minute %d is not a multiple of 60", u.Point.Minute))
		}
		catKey := dayOf(u.Point.Minute).Format(dayLayout) + "," + u.Point.SeriesID
		if _, ok := catRow[catKey]; !ok {
			add(&cat, catRow, catKey, hbaserest.Cell{Column: []byte(catalogFamily + ":l"), Value: metricstore.AppendLabels(nil, u.Labels)})
		}
		add(&pts, ptRow, pointRow(u.Point.SeriesID, u.Point.Minute), hbaserest.Cell{Column: pointColumn(u.Point.Minute), Value: metricstore.AppendValue(nil, &u.Point)})
	}
	for _, w := range []struct {
		table string
		cs    hbaserest.CellSet
	}{{m.catalog, cat}, {m.table, pts}} {
		body, err := json.Marshal(w.cs)
		if err != nil {
			return retry.Permanent(err)
		}
		if _, _, err := m.c.Do(ctx, http.MethodPut, "/"+url.PathEscape(w.table)+"/batch", nil, body); err != nil {
			return err
		}
	}
	return nil
}

// rows multigets rows of the point table and calls fn for every point cell.
func (m *MetricStore) rows(ctx context.Context, rows []string, fn func(series string, minute int64, value []byte) error) error {
	for start := 0; start < len(rows); start += m.maxRows {
		q := url.Values{}
		for _, r := range rows[start:min(start+m.maxRows, len(rows))] {
			q.Add("row", r)
		}
		code, body, err := m.c.Do(ctx, http.MethodGet, "/"+url.PathEscape(m.table)+"/multiget", q, nil, http.StatusNotFound)
		if err != nil {
			return err
		}
		if code == http.StatusNotFound {
			continue
		}
		var cs hbaserest.CellSet
		if err := json.Unmarshal(body, &cs); err != nil {
			return retry.Permanent(fmt.Errorf("hbasestore: cell set: %w", err))
		}
		for _, r := range cs.Row {
			series, hourS, ok := strings.Cut(string(r.Key), ",")
			hour, err := strconv.ParseInt(hourS, 10, 64)
			if !ok || err != nil {
				return retry.Permanent(fmt.Errorf("hbasestore: metric row key %q", r.Key))
			}
			for _, c := range r.Cell {
				mm, ok := strings.CutPrefix(string(c.Column), pointFamily+":")
				min, err := strconv.Atoi(mm)
				if !ok || err != nil || min < 0 || min > 59 {
					return retry.Permanent(fmt.Errorf("hbasestore: metric column %q", c.Column))
				}
				if err := fn(series, hour+int64(60*min), c.Value); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Get multigets the rows of the keys' hours.
func (m *MetricStore) Get(ctx context.Context, keys []metricstore.Key) (map[metricstore.Key]metricstore.Point, error) {
	want := map[metricstore.Key]bool{}
	var rows []string
	seen := map[string]bool{}
	for _, k := range keys {
		if err := checkSeries(k.SeriesID); err != nil {
			return nil, err
		}
		want[k] = true
		if r := pointRow(k.SeriesID, k.Minute); !seen[r] {
			seen[r] = true
			rows = append(rows, r)
		}
	}
	out := map[metricstore.Key]metricstore.Point{}
	err := m.rows(ctx, rows, func(series string, minute int64, v []byte) error {
		k := metricstore.Key{SeriesID: series, Minute: minute}
		if !want[k] {
			return nil
		}
		p := metricstore.Point{SeriesID: series, Minute: minute}
		if err := metricstore.DecodeValue(v, &p); err != nil {
			return retry.Permanent(fmt.Errorf("hbasestore: point %s@%d: %w", series, minute, err))
		}
		out[k] = p
		return nil
	})
	return out, err
}

// Range multigets the series' rows of the hours overlapping [start, end).
func (m *MetricStore) Range(ctx context.Context, seriesID string, start, end time.Time, fn func(*metricstore.Point) error) error {
	if err := checkSeries(seriesID); err != nil {
		return err
	}
	lo, hi := start.Unix(), end.Unix()
	var rows []string
	for h := lo - ((lo%3600)+3600)%3600; h < hi; h += 3600 {
		rows = append(rows, pointRow(seriesID, h))
	}
	var pts []metricstore.Point
	err := m.rows(ctx, rows, func(series string, minute int64, v []byte) error {
		if series != seriesID || minute < lo || minute >= hi {
			return nil
		}
		p := metricstore.Point{SeriesID: series, Minute: minute}
		if err := metricstore.DecodeValue(v, &p); err != nil {
			return retry.Permanent(fmt.Errorf("hbasestore: point %s@%d: %w", series, minute, err))
		}
		pts = append(pts, p)
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(pts, func(a, b metricstore.Point) int { return cmp.Compare(a.Minute, b.Minute) })
	for i := range pts {
		if err := fn(&pts[i]); err != nil {
			return err
		}
	}
	return nil
}

// scanCatalog calls fn for every catalog row with a key in [from, to).
func (m *MetricStore) scanCatalog(ctx context.Context, from, to string, fn func(day, series string, labels []byte) error) error {
	spec := hbaserest.ScannerSpec{StartRow: []byte(from), EndRow: []byte(to), Batch: 1000}
	return m.c.Scan(ctx, m.catalog, spec, func(r hbaserest.Row) error {
		day, series, ok := strings.Cut(string(r.Key), ",")
		if !ok {
			return retry.Permanent(fmt.Errorf("hbasestore: catalog row key %q", r.Key))
		}
		for _, c := range r.Cell {
			if string(c.Column) == catalogFamily+":l" {
				if err := fn(day, series, c.Value); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Series scans the catalog of the days overlapping [start, end).
func (m *MetricStore) Series(ctx context.Context, f metricstore.Filter, start, end time.Time) ([]metricstore.Series, error) {
	var out []metricstore.Series
	seen := map[string]bool{}
	for d := start.UTC().Truncate(24 * time.Hour); d.Before(end); d = d.Add(24 * time.Hour) {
		day := d.Format(dayLayout)
		err := m.scanCatalog(ctx, day+",", day+"-", func(_, series string, v []byte) error {
			if seen[series] {
				return nil
			}
			l, err := metricstore.DecodeLabels(v)
			if err != nil {
				return retry.Permanent(fmt.Errorf("hbasestore: series %s: %w", series, err))
			}
			if f.Match(l) {
				seen[series] = true
				out = append(out, metricstore.Series{ID: series, Labels: l})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DropBefore deletes, for every catalogued day that ended at or before cutoff, the point
// rows of each of its series' 24 hours, then the day's catalog rows.
func (m *MetricStore) DropBefore(ctx context.Context, cutoff time.Time) error {
	last := cutoff.UTC().Add(-24 * time.Hour).Truncate(24 * time.Hour) // the newest day to drop
	type entry struct{ day, series string }
	var drop []entry
	err := m.scanCatalog(ctx, "", last.Add(24*time.Hour).Format(dayLayout), func(day, series string, _ []byte) error {
		drop = append(drop, entry{day, series})
		return nil
	})
	if err != nil {
		return err
	}
	del := func(table, row string) error {
		_, _, err := m.c.Do(ctx, http.MethodDelete, "/"+url.PathEscape(table)+"/"+url.PathEscape(row), nil, nil, http.StatusNotFound)
		return err
	}
	for _, e := range drop {
		d, err := time.Parse(dayLayout, e.day)
		if err != nil {
			return retry.Permanent(fmt.Errorf("hbasestore: catalog day %q", e.day))
		}
		for h := range 24 {
			if err := del(m.table, pointRow(e.series, d.Unix()+int64(3600*h))); err != nil {
				return err
			}
		}
		if err := del(m.catalog, e.day+","+e.series); err != nil {
			return err
		}
	}
	return nil
}
