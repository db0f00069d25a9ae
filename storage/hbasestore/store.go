// Package hbasestore keeps trace rows in HBase through its REST gateway (`hbase rest start`),
// with plain net/http: no native HBase client for Go is obtainable here (DESIGN.md). Table
// mercury:traces, row = trace id, family s, qualifier = span id, value = Avro span body,
// family TTL = retention; dyed spans go to mercury:traces_shadow.
//
// Row keys and qualifiers are the lowercase hex of the ids, not the raw bytes: the gateway
// takes row keys from URL path segments and decodes them as UTF-8 text, which mangles
// arbitrary bytes. Hex keeps every id intact and, trace ids being random, still spreads rows
// evenly over regions.
package hbasestore

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/hbaserest"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

var _ tracestore.Rows = (*Store)(nil)

// Family is the column family holding spans.
const Family = "s"

// Config configures a Store. Only URL is required.
type Config struct {
	// URL of the REST gateway, e.g. http://hbase-rest:8080.
	URL string
	// Table and ShadowTable default to mercury:traces and mercury:traces_shadow.
	Table, ShadowTable string
	// TTL of family s when the store creates the tables (default 7 days). Retention is this
	// TTL: HBase expires cells itself, there is nothing to drop by hand.
	TTL time.Duration
	// HTTPClient defaults to a client with a 30 s timeout.
	HTTPClient *http.Client
	// Backoff retries 408/429/5xx and transport errors.
	Backoff retry.Backoff
	// MaxRowsPerGet bounds the rows of one multiget so its URL stays under the gateway's
	// header limit (default 150: about 6 KB of URL).
	MaxRowsPerGet int
}

// Store implements tracestore.Rows over the HBase REST gateway.
type Store struct {
	tracestore.RowDecoder
	cfg Config
	c   *hbaserest.Client
}

// New checks the gateway, creates the namespace and both tables if missing, and returns the
// store.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Table == "" {
		cfg.Table = "mercury:traces"
	}
	if cfg.ShadowTable == "" {
		cfg.ShadowTable = "mercury:traces_shadow"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 7 * 24 * time.Hour
	}
	if cfg.MaxRowsPerGet <= 0 {
		cfg.MaxRowsPerGet = 150
	}
	c, err := hbaserest.New(cfg.URL, cfg.HTTPClient, cfg.Backoff)
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, c: c}
	for _, t := range []string{cfg.Table, cfg.ShadowTable} {
		if err := c.EnsureTable(ctx, t, Family, cfg.TTL); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) table(dyed bool) string {
	if dyed {
		return s.cfg.ShadowTable
	}
	return s.cfg.Table
}

// PutSpans writes one cell set per table. The REST gateway takes the row keys from the body
// when the URL names a placeholder row, so a whole batch is one request per table.
func (s *Store) PutSpans(ctx context.Context, spans []schemas.Span) error {
	for _, dyed := range []bool{false, true} {
		var cs hbaserest.CellSet
		rowOf := map[schemas.TraceID]int{}
		for i := range spans {
			sp := &spans[i]
			if sp.Dyed != dyed {
				continue
			}
			r, ok := rowOf[sp.TraceID]
			if !ok {
				r = len(cs.Row)
				rowOf[sp.TraceID] = r
				cs.Row = append(cs.Row, hbaserest.Row{Key: hexBytes(sp.TraceID[:])})
			}
			col := append([]byte(Family+":"), hexBytes(sp.SpanID[:])...)
			cs.Row[r].Cell = append(cs.Row[r].Cell, hbaserest.Cell{Column: col, Value: tracestore.AppendRow(nil, sp)})
		}
		if len(cs.Row) == 0 {
			continue
		}
		body, err := json.Marshal(cs)
		if err != nil {
			return retry.Permanent(err)
		}
		if _, _, err := s.c.Do(ctx, http.MethodPut, "/"+url.PathEscape(s.table(dyed))+"/batch", nil, body); err != nil {
			return err
		}
	}
	return nil
}

func hexBytes(b []byte) []byte { return hex.AppendEncode(nil, b) }

// GetTrace reads the row from the production table, then from the shadow table.
func (s *Store) GetTrace(ctx context.Context, id tracestore.TraceID) ([]schemas.Span, error) {
	for _, dyed := range []bool{false, true} {
		code, body, err := s.c.Do(ctx, http.MethodGet, "/"+url.PathEscape(s.table(dyed))+"/"+id.String(), nil, nil, http.StatusNotFound)
		if err != nil {
			return nil, err
		}
		if code == http.StatusNotFound {
			continue
		}
		m, err := s.decodeCellSet(body)
		if err != nil {
			return nil, err
		}
		if spans := m[id]; len(spans) > 0 {
			return spans, nil
		}
	}
	return nil, fmt.Errorf("hbasestore: trace %s: %w", id, tracestore.ErrNotFound)
}

// GetTraces is one multiget on the production table (per MaxRowsPerGet ids); only ids not
// found there are looked up in the shadow table, so a search that excludes dyed traces costs
// one request.
func (s *Store) GetTraces(ctx context.Context, ids []tracestore.TraceID) (map[tracestore.TraceID][]schemas.Span, error) {
	out := map[tracestore.TraceID][]schemas.Span{}
	want := dedup(ids)
	for _, dyed := range []bool{false, true} {
		for start := 0; start < len(want); start += s.cfg.MaxRowsPerGet {
			chunk := want[start:min(start+s.cfg.MaxRowsPerGet, len(want))]
			q := url.Values{}
			for _, id := range chunk {
				q.Add("row", id.String())
			}
			code, body, err := s.c.Do(ctx, http.MethodGet, "/"+url.PathEscape(s.table(dyed))+"/multiget", q, nil, http.StatusNotFound)
			if err != nil {
				return nil, err
			}
			if code == http.StatusNotFound {
				continue // none of the rows exist
			}
			m, err := s.decodeCellSet(body)
			if err != nil {
				return nil, err
			}
			for id, spans := range m {
				out[id] = append(out[id], spans...)
			}
		}
		var missing []tracestore.TraceID
		for _, id := range want {
			if _, ok := out[id]; !ok {
				missing = append(missing, id)
			}
		}
		want = missing
	}
	return out, nil
}

func dedup(ids []tracestore.TraceID) []tracestore.TraceID {
	seen := make(map[tracestore.TraceID]bool, len(ids))
	out := make([]tracestore.TraceID, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// decodeCellSet turns a cell set of trace rows into spans by trace id.
func (s *Store) decodeCellSet(body []byte) (map[tracestore.TraceID][]schemas.Span, error) {
	var cs hbaserest.CellSet
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, retry.Permanent(fmt.Errorf("hbasestore: cell set: %w", err))
	}
	return s.decodeRows(cs.Row)
}

func (s *Store) decodeRows(rows []hbaserest.Row) (map[tracestore.TraceID][]schemas.Span, error) {
	out := make(map[tracestore.TraceID][]schemas.Span, len(rows))
	for _, r := range rows {
		id, err := schemas.ParseTraceID(string(r.Key))
		if err != nil {
			return nil, retry.Permanent(fmt.Errorf("hbasestore: row key: %w", err))
		}
		for _, c := range r.Cell {
			if !bytes.HasPrefix(c.Column, []byte(Family+":")) {
				continue
			}
			var sp schemas.Span
			if s.DecodeRow(c.Value, &sp) {
				out[id] = append(out[id], sp)
			}
		}
	}
	return out, nil
}

// ScanTraces walks every trace of one table (dyed selects the shadow table) in row-key order
// with a REST scanner, batch cells per page, and calls fn once per trace. It serves
// rebuilding an index from the rows. The scanner is deleted on every exit path.
func (s *Store) ScanTraces(ctx context.Context, dyed bool, batch int, fn func(tracestore.TraceID, []schemas.Span) error) error {
	if batch <= 0 {
		batch = 1000
	}
	var err error
	// A row wider than batch arrives over several pages: hold the current trace until a page
	// starts with another row or the scanner is exhausted.
	var (
		cur   tracestore.TraceID
		spans []schemas.Span
		have  bool
	)
	err = s.c.Scan(ctx, s.table(dyed), hbaserest.ScannerSpec{Batch: batch}, func(r hbaserest.Row) error {
		one, err := s.decodeRows([]hbaserest.Row{r})
		if err != nil {
			return err
		}
		for id, sp := range one {
			if have && id != cur {
				if err := fn(cur, spans); err != nil {
					return err
				}
				spans = nil
			}
			cur, have = id, true
			spans = append(spans, sp...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if have {
		return fn(cur, spans)
	}
	return nil
}
