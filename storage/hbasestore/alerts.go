package hbasestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/hbaserest"
)

var _ alertstore.Store = (*AlertStore)(nil)

// Alert store layout. HBase is atomic per row only, so every object that is written with a
// condition lives in one row, changed by check-and-put on a revision cell; the rows that
// index it are hints a reader checks against that row, written before it (a crash leaves a
// hint to nothing, never an object nobody finds). String parts of keys are lowercase hex
// (ordered like the bytes, safe in a URL path), joined by commas; times are 16 hex digits of
// the inverted, sign-flipped nanoseconds, so a forward scan is newest first.
//
//	<prefix>s        family a
//	  a,<id>                a:j alert JSON, a:r revision ("<n> <writer token>")
//	  i,<^starts>,<id>      a:i ∅              the board's newest-first list
//	  k,<key>               a:k id             the firing alert of a key
//	  o,<id>                a:o revision       the alert may have notices to deliver
//	<prefix>_rules   family r
//	  r,<name> / g,<name>   r:v current version ("<n> <token>"), r:<n as 16 hex> that version
//	  s,<id>                r:j silence
//	<prefix>_events  family e
//	  e,<id>                e:j event
//	  x,<^ts>,<id> and s,<service>,… t,<type>,… g,<signature>,<^ts>,<id>
//	                        e:i "<service>,<type>,<signature>" (hex): filters without a read
//	<prefix>_state   family p
//	  p,<group>,<topic>,<partition>   p:j partition state
const (
	alertFamily = "a"
	ruleFamily  = "r"
	eventFamily = "e"
	stateFamily = "p"
	// forever is HBase's FOREVER TTL (Integer.MAX_VALUE seconds): alerts and rules are kept,
	// events are dropped by DropEventsBefore.
	forever = math.MaxInt32 * time.Second
)

// AlertsConfig configures an AlertStore. Only URL is required.
type AlertsConfig struct {
	URL string
	// Prefix of the table names (default mercury:alert): tables mercury:alerts,
	// mercury:alert_rules, mercury:alert_events, mercury:alert_state.
	Prefix     string
	HTTPClient *http.Client
	Backoff    retry.Backoff
	// MaxRaces bounds how often one write re-reads and retries after losing a
	// check-and-put to another writer (default 100); then it fails retryable.
	MaxRaces int
}

// AlertStore implements alertstore.Store over the HBase REST gateway. Several processes can
// share it: every conditional write is a check-and-put of one row.
type AlertStore struct {
	c                            *hbaserest.Client
	hc                           *http.Client
	alerts, rules, events, state string
	races                        int
	closed                       atomic.Bool
}

// NewAlerts checks the gateway, creates the namespace and the tables if missing, and
// returns the store.
func NewAlerts(ctx context.Context, cfg AlertsConfig) (*AlertStore, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "mercury:alert"
	}
	if cfg.MaxRaces <= 0 {
		cfg.MaxRaces = 100
	}
	c, err := hbaserest.New(cfg.URL, cfg.HTTPClient, cfg.Backoff)
	if err != nil {
		return nil, err
	}
	s := &AlertStore{c: c, hc: cfg.HTTPClient, alerts: cfg.Prefix + "s", rules: cfg.Prefix + "_rules",
		events: cfg.Prefix + "_events", state: cfg.Prefix + "_state", races: cfg.MaxRaces}
	for _, t := range []struct{ table, family string }{
		{s.alerts, alertFamily}, {s.rules, ruleFamily}, {s.events, eventFamily}, {s.state, stateFamily},
	} {
		if err := c.EnsureTable(ctx, t.table, t.family, forever); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Close marks the store closed and releases the idle connections of a client the caller
// passed in.
func (s *AlertStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.hc != nil {
		s.hc.CloseIdleConnections()
	}
	return nil
}

func (s *AlertStore) open() error {
	if s.closed.Load() {
		return alertstore.ErrClosed
	}
	return nil
}

// ---- rows

func enc(v string) string { return hex.EncodeToString([]byte(v)) }

func dec(v string) (string, error) {
	b, err := hex.DecodeString(v)
	return string(b), err
}

// inv is a time part of a key: later times sort first.
func inv(ns int64) string { return fmt.Sprintf("%016x", ^(uint64(ns) ^ (1 << 63))) }

func uninv(h string) (int64, error) {
	u, err := strconv.ParseUint(h, 16, 64)
	return int64(^u ^ (1 << 63)), err
}

func row(parts ...string) string { return strings.Join(parts, ",") }

func col(family, qualifier string) string { return family + ":" + qualifier }

func cell(column string, v []byte) hbaserest.Cell {
	return hbaserest.Cell{Column: []byte(column), Value: v}
}

// token tells this writer's revision from another's, so a check-and-put whose reply was
// lost (and retried into a 304) can see that it landed.
func token() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// revision is the number of a revision cell ("<n> <token>"); 0 for none.
func revision(v []byte) int64 {
	n, _, _ := strings.Cut(string(v), " ")
	r, _ := strconv.ParseInt(n, 10, 64)
	return r
}

func nextRevision(v []byte) []byte {
	return fmt.Appendf(nil, "%d %s", revision(v)+1, token())
}

func (s *AlertStore) path(table, key string) string {
	return "/" + url.PathEscape(table) + "/" + url.PathEscape(key)
}

// get reads one row's cells by column; nil when the row does not exist.
func (s *AlertStore) get(ctx context.Context, table, key string) (map[string][]byte, error) {
	code, body, err := s.c.Do(ctx, http.MethodGet, s.path(table, key), nil, nil, http.StatusNotFound)
	if err != nil || code == http.StatusNotFound {
		return nil, err
	}
	rows, err := decodeRows(body)
	if err != nil {
		return nil, err
	}
	return rows[key], nil
}

// multiget reads rows by key; missing rows are missing from the map.
func (s *AlertStore) multiget(ctx context.Context, table string, keys []string) (map[string]map[string][]byte, error) {
	out := map[string]map[string][]byte{}
	const chunk = 150 // keeps the URL well under the gateway's header limit
	for start := 0; start < len(keys); start += chunk {
		q := url.Values{}
		for _, k := range keys[start:min(start+chunk, len(keys))] {
			q.Add("row", k)
		}
		code, body, err := s.c.Do(ctx, http.MethodGet, "/"+url.PathEscape(table)+"/multiget", q, nil, http.StatusNotFound)
		if err != nil {
			return nil, err
		}
		if code == http.StatusNotFound {
			continue
		}
		rows, err := decodeRows(body)
		if err != nil {
			return nil, err
		}
		for k, v := range rows {
			out[k] = v
		}
	}
	return out, nil
}

func decodeRows(body []byte) (map[string]map[string][]byte, error) {
	var cs hbaserest.CellSet
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, retry.Permanent(fmt.Errorf("hbasestore: cell set: %w", err))
	}
	out := make(map[string]map[string][]byte, len(cs.Row))
	for _, r := range cs.Row {
		cells := out[string(r.Key)]
		if cells == nil {
			cells = map[string][]byte{}
			out[string(r.Key)] = cells
		}
		for _, c := range r.Cell {
			cells[string(c.Column)] = c.Value
		}
	}
	return out, nil
}

// put writes rows blind, in one request (the keys travel in the body).
func (s *AlertStore) put(ctx context.Context, table string, rows []hbaserest.Row) error {
	if len(rows) == 0 {
		return nil
	}
	body, err := json.Marshal(hbaserest.CellSet{Row: rows})
	if err != nil {
		return retry.Permanent(err)
	}
	_, _, err = s.c.Do(ctx, http.MethodPut, "/"+url.PathEscape(table)+"/batch", nil, body)
	return err
}

// checkAndPut writes cells to one row if column check.Column holds check.Value (empty: the
// cell is missing); false when it does not.
func (s *AlertStore) checkAndPut(ctx context.Context, table, key string, cells []hbaserest.Cell, check hbaserest.Cell) (bool, error) {
	return s.checked(ctx, "put", table, key, append(cells, check))
}

// checkAndDelete deletes the check cell if it holds its value; false when it does not.
func (s *AlertStore) checkAndDelete(ctx context.Context, table, key string, check hbaserest.Cell) (bool, error) {
	return s.checked(ctx, "delete", table, key, []hbaserest.Cell{check})
}

func (s *AlertStore) checked(ctx context.Context, mode, table, key string, cells []hbaserest.Cell) (bool, error) {
	body, err := json.Marshal(hbaserest.CellSet{Row: []hbaserest.Row{{Key: []byte(key), Cell: cells}}})
	if err != nil {
		return false, retry.Permanent(err)
	}
	code, _, err := s.c.Do(ctx, http.MethodPut, s.path(table, key), url.Values{"check": {mode}}, body, http.StatusNotModified)
	return err == nil && code != http.StatusNotModified, err
}

func (s *AlertStore) deleteRow(ctx context.Context, table, key string) error {
	_, _, err := s.c.Do(ctx, http.MethodDelete, s.path(table, key), nil, nil, http.StatusNotFound)
	return err
}

// errStop ends a scan early without an error.
var errStop = errors.New("stop")

type scanned struct {
	key   string
	cells map[string][]byte
}

// scan walks the rows in [start, end) and calls fn with pages of up to page whole rows
// (the scanner may split a wide row over its pages; scan joins the parts).
func (s *AlertStore) scan(ctx context.Context, table, start, end string, page int, fn func([]scanned) error) error {
	var buf []scanned
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := fn(buf)
		buf = nil
		return err
	}
	err := s.c.Scan(ctx, table, hbaserest.ScannerSpec{StartRow: []byte(start), EndRow: []byte(end), Batch: page}, func(r hbaserest.Row) error {
		if n := len(buf); n > 0 && buf[n-1].key == string(r.Key) {
			for _, c := range r.Cell {
				buf[n-1].cells[string(c.Column)] = c.Value
			}
			return nil
		}
		if len(buf) >= page {
			// The last row may continue on the next page: hand over all but it.
			last := buf[len(buf)-1]
			buf = buf[:len(buf)-1]
			if err := flush(); err != nil {
				return err
			}
			buf = []scanned{last}
		}
		cells := make(map[string][]byte, len(r.Cell))
		for _, c := range r.Cell {
			cells[string(c.Column)] = c.Value
		}
		buf = append(buf, scanned{string(r.Key), cells})
		return nil
	})
	if err == nil {
		err = flush()
	}
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// prefixEnd is the end row of a scan of every key starting with p + ",": ',' + 1 is '-'.
func prefixEnd(p string) string { return p + "-" }

func (s *AlertStore) raceLost(what string) error {
	return retry.Retryable(fmt.Errorf("hbasestore: %s: lost the check-and-put to other writers %d times", what, s.races))
}

// ---- alerts

func checkAlert(a *alertstore.Alert) error {
	if a.ID == "" || a.Key == "" {
		return fmt.Errorf("%w: alert needs an id and a key", alertstore.ErrInvalid)
	}
	if a.State != alertstore.StateFiring && a.State != alertstore.StateResolved {
		return fmt.Errorf("%w: alert %s: state %q", alertstore.ErrInvalid, a.ID, a.State)
	}
	return nil
}

var (
	colAlert    = col(alertFamily, "j")
	colRevision = col(alertFamily, "r")
	colListed   = col(alertFamily, "i")
	colOpen     = col(alertFamily, "k")
	colOutbox   = col(alertFamily, "o")
)

func alertRow(id string) string { return row("a", enc(id)) }
func keyRow(k string) string    { return row("k", enc(k)) }
func outboxRow(id string) string {
	return row("o", enc(id))
}
func listRow(a *alertstore.Alert) string { return row("i", inv(a.StartsAt.UnixNano()), enc(a.ID)) }

func decodeAlert(cells map[string][]byte) (alertstore.Alert, error) {
	var a alertstore.Alert
	if err := json.Unmarshal(cells[colAlert], &a); err != nil {
		return a, retry.Permanent(fmt.Errorf("hbasestore: corrupt alert: %w", err))
	}
	return a, nil
}

// hints are the index rows an alert's new state needs before it is stored: its place in
// the list (new or moved) and, with notices, the outbox marker carrying the revision.
func hints(old, a *alertstore.Alert, rev []byte) []hbaserest.Row {
	var rows []hbaserest.Row
	if old == nil || !old.StartsAt.Equal(a.StartsAt) {
		rows = append(rows, hbaserest.Row{Key: []byte(listRow(a)), Cell: []hbaserest.Cell{cell(colListed, nil)}})
	}
	if len(a.Outbox) > 0 {
		rows = append(rows, hbaserest.Row{Key: []byte(outboxRow(a.ID)), Cell: []hbaserest.Cell{cell(colOutbox, rev)}})
	}
	return rows
}

// CreateAlert stores a unless its ID exists. A firing alert then becomes the open alert of
// its key, resolving the one open before (unless that one started later: then a replayed
// older alert yields to it).
func (s *AlertStore) CreateAlert(ctx context.Context, a alertstore.Alert) (bool, error) {
	if err := checkAlert(&a); err != nil {
		return false, err
	}
	if err := s.open(); err != nil {
		return false, err
	}
	key := alertRow(a.ID)
	cells, err := s.get(ctx, s.alerts, key)
	if err != nil {
		return false, err
	}
	if cells != nil {
		// A replay, or a second instance making the same decision: finish what a creator
		// that died after storing the alert may have left undone.
		cur, err := decodeAlert(cells)
		if err != nil || cur.State != alertstore.StateFiring {
			return false, err
		}
		return false, s.claimKey(ctx, &cur)
	}
	body, err := json.Marshal(&a)
	if err != nil { // a value JSON cannot hold (NaN): writing it again will not help
		return false, fmt.Errorf("%w: %w", alertstore.ErrInvalid, err)
	}
	rev := nextRevision(nil)
	if err := s.put(ctx, s.alerts, hints(nil, &a, rev)); err != nil {
		return false, err
	}
	ok, err := s.checkAndPut(ctx, s.alerts, key, []hbaserest.Cell{cell(colAlert, body), cell(colRevision, rev)}, cell(colRevision, nil))
	if err != nil {
		return false, err
	}
	if !ok {
		// Created meanwhile: by another writer, or by this request retried after its reply
		// was lost.
		cells, err := s.get(ctx, s.alerts, key)
		if err != nil || string(cells[colRevision]) != string(rev) {
			return false, err
		}
	}
	if a.State == alertstore.StateFiring {
		return true, s.claimKey(ctx, &a)
	}
	return true, nil
}

// claimKey points a's key at a, resolving the alert it pointed at while that one fires.
func (s *AlertStore) claimKey(ctx context.Context, a *alertstore.Alert) error {
	key := keyRow(a.Key)
	for range s.races {
		cells, err := s.get(ctx, s.alerts, key)
		if err != nil {
			return err
		}
		cur := cells[colOpen]
		if string(cur) == a.ID {
			return nil
		}
		if len(cur) > 0 {
			prev, found, err := s.getAlert(ctx, string(cur))
			if err != nil {
				return err
			}
			if found && prev.State == alertstore.StateFiring {
				if prev.StartsAt.After(a.StartsAt) {
					_, err := s.update(ctx, a.ID, resolve(prev.StartsAt, "superseded by "+prev.ID), false)
					return ignoreUnchanged(err)
				}
				if _, err := s.update(ctx, prev.ID, resolve(a.StartsAt, "superseded by "+a.ID), false); ignoreUnchanged(err) != nil {
					return err
				}
			}
		}
		ok, err := s.checkAndPut(ctx, s.alerts, key, []hbaserest.Cell{cell(colOpen, []byte(a.ID))}, cell(colOpen, cur))
		if err != nil || ok {
			return err
		}
	}
	return s.raceLost("open alert of key " + a.Key)
}

var errUnchanged = errors.New("unchanged")

func ignoreUnchanged(err error) error {
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// resolve resolves a firing alert superseded at at.
func resolve(at time.Time, note string) func(*alertstore.Alert) error {
	return func(a *alertstore.Alert) error {
		if a.State != alertstore.StateFiring {
			return errUnchanged
		}
		a.State, a.ResolvedAt = alertstore.StateResolved, at
		a.History = append(a.History, alertstore.Change{At: at, What: "resolved", Note: note})
		return nil
	}
}

// UpdateAlert applies fn to the stored alert and stores the result with a check-and-put on
// the revision it read; a concurrent writer makes it read again and apply fn to the new
// state, so no update is lost and none is applied twice.
func (s *AlertStore) UpdateAlert(ctx context.Context, id string, fn func(*alertstore.Alert) error) (alertstore.Alert, error) {
	if err := s.open(); err != nil {
		return alertstore.Alert{}, err
	}
	return s.update(ctx, id, fn, true)
}

// update is UpdateAlert; keys false leaves the key's open alert alone (claimKey's own use).
func (s *AlertStore) update(ctx context.Context, id string, fn func(*alertstore.Alert) error, keys bool) (alertstore.Alert, error) {
	key := alertRow(id)
	var old alertstore.Alert
	for range s.races {
		cells, err := s.get(ctx, s.alerts, key)
		if err != nil {
			return old, err
		}
		if cells == nil {
			return old, fmt.Errorf("%w: alert %s", alertstore.ErrNotFound, id)
		}
		// Two decodings of one record: fn changes a freely while old keeps the indexed fields.
		if old, err = decodeAlert(cells); err != nil {
			return old, err
		}
		a, _ := decodeAlert(cells)
		if err := fn(&a); err != nil {
			return old, err
		}
		a.ID, a.Key = old.ID, old.Key
		if err := checkAlert(&a); err != nil {
			return old, err
		}
		body, err := json.Marshal(&a)
		if err != nil {
			return old, fmt.Errorf("%w: %w", alertstore.ErrInvalid, err)
		}
		rev := nextRevision(cells[colRevision])
		if err := s.put(ctx, s.alerts, hints(&old, &a, rev)); err != nil {
			return old, err
		}
		ok, err := s.checkAndPut(ctx, s.alerts, key, []hbaserest.Cell{cell(colAlert, body), cell(colRevision, rev)},
			cell(colRevision, cells[colRevision]))
		if err != nil {
			return old, err
		}
		if !ok {
			now, err := s.get(ctx, s.alerts, key)
			if err != nil {
				return old, err
			}
			if string(now[colRevision]) != string(rev) {
				continue // another writer got there first: apply fn to its result
			}
		}
		if !old.StartsAt.Equal(a.StartsAt) {
			if err := s.deleteRow(ctx, s.alerts, listRow(&old)); err != nil {
				return a, err
			}
		}
		if keys {
			switch {
			case a.State == alertstore.StateFiring && old.State != alertstore.StateFiring:
				err = s.claimKey(ctx, &a)
			case a.State != alertstore.StateFiring && old.State == alertstore.StateFiring:
				// Only if it still points here: a newer alert may own the key already.
				_, err = s.checkAndDelete(ctx, s.alerts, keyRow(a.Key), cell(colOpen, []byte(a.ID)))
			}
		}
		return a, err
	}
	return old, s.raceLost("alert " + id)
}

// GetAlert returns one alert.
func (s *AlertStore) GetAlert(ctx context.Context, id string) (alertstore.Alert, error) {
	if err := s.open(); err != nil {
		return alertstore.Alert{}, err
	}
	a, found, err := s.getAlert(ctx, id)
	if err == nil && !found {
		err = fmt.Errorf("%w: alert %s", alertstore.ErrNotFound, id)
	}
	return a, err
}

func (s *AlertStore) getAlert(ctx context.Context, id string) (alertstore.Alert, bool, error) {
	cells, err := s.get(ctx, s.alerts, alertRow(id))
	if err != nil || cells == nil {
		return alertstore.Alert{}, false, err
	}
	a, err := decodeAlert(cells)
	return a, err == nil, err
}

// OpenAlert returns the firing alert with key k.
func (s *AlertStore) OpenAlert(ctx context.Context, k string) (alertstore.Alert, bool, error) {
	if err := s.open(); err != nil {
		return alertstore.Alert{}, false, err
	}
	cells, err := s.get(ctx, s.alerts, keyRow(k))
	if err != nil || len(cells[colOpen]) == 0 {
		return alertstore.Alert{}, false, err
	}
	a, found, err := s.getAlert(ctx, string(cells[colOpen]))
	if err != nil || !found || a.State != alertstore.StateFiring || a.Key != k {
		return alertstore.Alert{}, false, err
	}
	return a, true, nil
}

func limitOf(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
}

// alertsOf multigets the alerts of a page of index rows whose last key part is the id.
func (s *AlertStore) alertsOf(ctx context.Context, page []scanned) ([]alertstore.Alert, error) {
	keys := make([]string, 0, len(page))
	for _, r := range page {
		keys = append(keys, "a,"+r.key[strings.LastIndexByte(r.key, ',')+1:])
	}
	rows, err := s.multiget(ctx, s.alerts, keys)
	if err != nil {
		return nil, err
	}
	out := make([]alertstore.Alert, len(page))
	for i, k := range keys {
		if cells := rows[k]; cells != nil {
			if out[i], err = decodeAlert(cells); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// ListAlerts scans the list newest first, reads each page's alerts in one multiget and
// filters them.
func (s *AlertStore) ListAlerts(ctx context.Context, f alertstore.AlertFilter) ([]alertstore.Alert, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	if f.Key != "" && f.State == alertstore.StateFiring {
		a, ok, err := s.OpenAlert(ctx, f.Key)
		if err != nil || !ok {
			return nil, err
		}
		return []alertstore.Alert{a}, nil
	}
	limit := limitOf(f.Limit)
	var out []alertstore.Alert
	err := s.scan(ctx, s.alerts, "i,", prefixEnd("i"), min(limit, 200), func(page []scanned) error {
		as, err := s.alertsOf(ctx, page)
		if err != nil {
			return err
		}
		for i := range as {
			a := &as[i]
			// A hint whose alert is missing or has moved (another start) is stale.
			if a.ID == "" || listRow(a) != page[i].key {
				continue
			}
			if (f.State == "" || a.State == f.State) && (f.Level == "" || a.Level == f.Level) &&
				(f.Service == "" || a.Service == f.Service) && (f.Kind == "" || a.Kind == f.Kind) &&
				(f.Key == "" || a.Key == f.Key) {
				out = append(out, *a)
				if len(out) == limit {
					return errStop
				}
			}
		}
		return nil
	})
	return out, err
}

// PendingAlerts lists alerts with a notice due at now. A marker whose alert has delivered
// everything as of the marker's revision is removed, with a check-and-delete on that
// revision so that a writer adding a notice meanwhile keeps its marker.
func (s *AlertStore) PendingAlerts(ctx context.Context, now time.Time, limit int) ([]alertstore.Alert, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	limit = limitOf(limit)
	var out []alertstore.Alert
	err := s.scan(ctx, s.alerts, "o,", prefixEnd("o"), 200, func(page []scanned) error {
		keys := make([]string, len(page))
		for i, r := range page {
			keys[i] = "a," + strings.TrimPrefix(r.key, "o,")
		}
		rows, err := s.multiget(ctx, s.alerts, keys)
		if err != nil {
			return err
		}
		for i, r := range page {
			cells := rows[keys[i]]
			if cells == nil {
				continue // not stored yet (or never): the marker waits
			}
			a, err := decodeAlert(cells)
			if err != nil {
				return err
			}
			if len(a.Outbox) == 0 {
				if marker := r.cells[colOutbox]; revision(cells[colRevision]) >= revision(marker) {
					if _, err := s.checkAndDelete(ctx, s.alerts, r.key, cell(colOutbox, marker)); err != nil {
						return err
					}
				}
				continue
			}
			if slices.ContainsFunc(a.Outbox, func(n alertstore.Notice) bool { return !n.NextAt.After(now) }) {
				out = append(out, a)
				if len(out) == limit {
					return errStop
				}
			}
		}
		return nil
	})
	return out, err
}

// ---- silences

var colJSON = col(ruleFamily, "j")

func silenceRow(id string) string { return row("s", enc(id)) }

// PutSilence validates and stores a silence.
func (s *AlertStore) PutSilence(ctx context.Context, sil alertstore.Silence) (alertstore.Silence, error) {
	if err := sil.Validate(); err != nil {
		return sil, err
	}
	if err := s.open(); err != nil {
		return sil, err
	}
	if sil.ID == "" {
		sil.ID = token()
	}
	body, err := json.Marshal(&sil)
	if err != nil {
		return sil, retry.Permanent(err)
	}
	return sil, s.put(ctx, s.rules, []hbaserest.Row{{Key: []byte(silenceRow(sil.ID)), Cell: []hbaserest.Cell{cell(colJSON, body)}}})
}

// GetSilence returns one silence.
func (s *AlertStore) GetSilence(ctx context.Context, id string) (alertstore.Silence, error) {
	var sil alertstore.Silence
	if err := s.open(); err != nil {
		return sil, err
	}
	cells, err := s.get(ctx, s.rules, silenceRow(id))
	if err != nil {
		return sil, err
	}
	if cells == nil {
		return sil, fmt.Errorf("%w: silence %s", alertstore.ErrNotFound, id)
	}
	return sil, unmarshal(cells[colJSON], &sil)
}

func unmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return retry.Permanent(fmt.Errorf("hbasestore: corrupt record: %w", err))
	}
	return nil
}

// Silences lists every silence, newest end first.
func (s *AlertStore) Silences(ctx context.Context) ([]alertstore.Silence, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	var out []alertstore.Silence
	err := s.scan(ctx, s.rules, "s,", prefixEnd("s"), 500, func(page []scanned) error {
		for _, r := range page {
			var sil alertstore.Silence
			if err := unmarshal(r.cells[colJSON], &sil); err != nil {
				return err
			}
			out = append(out, sil)
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].EndsAt.After(out[j].EndsAt) })
	return out, err
}

// ---- rules and strategies: one row per name holds every version and the current number

var colVersion = col(ruleFamily, "v")

func versionCol(v int64) string { return col(ruleFamily, fmt.Sprintf("%016x", v)) }

// putVersion stores obj as version current+1 of name (kind "r" rules, "g" strategies) if
// version is the current one, in one check-and-put of the row on the version cell.
func (s *AlertStore) putVersion(ctx context.Context, kind, name string, obj any, meta *alertstore.Versioned, version int64, by string) error {
	if err := s.open(); err != nil {
		return err
	}
	key := row(kind, enc(name))
	cells, err := s.get(ctx, s.rules, key)
	if err != nil {
		return err
	}
	cur := cells[colVersion]
	if revision(cur) != version {
		return fmt.Errorf("%w: %s %s is at version %d, not %d", alertstore.ErrConflict, kind, name, revision(cur), version)
	}
	meta.Version, meta.UpdatedAt, meta.UpdatedBy = version+1, time.Now().UTC(), by
	body, err := json.Marshal(obj)
	if err != nil {
		return retry.Permanent(err)
	}
	next := nextRevision(cur)
	ok, err := s.checkAndPut(ctx, s.rules, key, []hbaserest.Cell{cell(colVersion, next), cell(versionCol(meta.Version), body)}, cell(colVersion, cur))
	if err != nil || ok {
		return err
	}
	now, err := s.get(ctx, s.rules, key)
	if err != nil || string(now[colVersion]) == string(next) {
		return err // our retried request had landed
	}
	return fmt.Errorf("%w: %s %s changed to version %d meanwhile", alertstore.ErrConflict, kind, name, revision(now[colVersion]))
}

// getVersion reads version (0: current) of name into v; ErrNotFound when absent or deleted.
func (s *AlertStore) getVersion(ctx context.Context, kind, name string, version int64, v any, meta func() *alertstore.Versioned) error {
	if err := s.open(); err != nil {
		return err
	}
	cells, err := s.get(ctx, s.rules, row(kind, enc(name)))
	if err != nil {
		return err
	}
	if version <= 0 {
		version = revision(cells[colVersion])
	}
	body, ok := cells[versionCol(version)]
	if !ok || version == 0 {
		return fmt.Errorf("%w: %s %s version %d", alertstore.ErrNotFound, kind, name, version)
	}
	if err := unmarshal(body, v); err != nil {
		return err
	}
	if meta().Deleted {
		return fmt.Errorf("%w: %s %s version %d", alertstore.ErrNotFound, kind, name, version)
	}
	return nil
}

// versions decodes the versions of one row, oldest first.
func versions[T any](cells map[string][]byte) ([]T, error) {
	var cols []string
	for c := range cells {
		if c != colVersion && strings.HasPrefix(c, ruleFamily+":") {
			cols = append(cols, c)
		}
	}
	sort.Strings(cols) // fixed-width hex: by version
	out := make([]T, 0, len(cols))
	for _, c := range cols {
		var t T
		if err := unmarshal(cells[c], &t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func historyOf[T any](ctx context.Context, s *AlertStore, kind, name string) ([]T, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	cells, err := s.get(ctx, s.rules, row(kind, enc(name)))
	if err != nil {
		return nil, err
	}
	out, err := versions[T](cells)
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: %s %s", alertstore.ErrNotFound, kind, name)
	}
	return out, err
}

// currentOf reads the current version of every name (by name), deleted ones left out.
func currentOf[T any](ctx context.Context, s *AlertStore, kind string, meta func(*T) *alertstore.Versioned) ([]T, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	var out []T
	err := s.scan(ctx, s.rules, kind+",", prefixEnd(kind), 1000, func(page []scanned) error {
		for _, r := range page {
			body, ok := r.cells[versionCol(revision(r.cells[colVersion]))]
			if !ok {
				continue
			}
			var t T
			if err := unmarshal(body, &t); err != nil {
				return err
			}
			if !meta(&t).Deleted {
				out = append(out, t)
			}
		}
		return nil
	})
	return out, err
}

// PutRule validates r and stores it as the next version.
func (s *AlertStore) PutRule(ctx context.Context, r alertstore.Rule, version int64, by string) (alertstore.Rule, error) {
	r.Deleted = false
	if err := r.Validate(); err != nil {
		return r, err
	}
	return r, s.putVersion(ctx, "r", r.Name, &r, &r.Versioned, version, by)
}

// GetRule reads a rule version (0: current).
func (s *AlertStore) GetRule(ctx context.Context, name string, version int64) (alertstore.Rule, error) {
	var r alertstore.Rule
	return r, s.getVersion(ctx, "r", name, version, &r, func() *alertstore.Versioned { return &r.Versioned })
}

// Rules lists the current rules.
func (s *AlertStore) Rules(ctx context.Context) ([]alertstore.Rule, error) {
	return currentOf(ctx, s, "r", func(r *alertstore.Rule) *alertstore.Versioned { return &r.Versioned })
}

// RuleHistory lists every version of a rule.
func (s *AlertStore) RuleHistory(ctx context.Context, name string) ([]alertstore.Rule, error) {
	return historyOf[alertstore.Rule](ctx, s, "r", name)
}

// DeleteRule stores a deleted version (the history keeps the rule).
func (s *AlertStore) DeleteRule(ctx context.Context, name string, version int64, by string) error {
	r, err := s.GetRule(ctx, name, 0)
	if err != nil {
		return err
	}
	r.Deleted = true
	return s.putVersion(ctx, "r", name, &r, &r.Versioned, version, by)
}

// PutStrategy validates st and stores it as the next version.
func (s *AlertStore) PutStrategy(ctx context.Context, st alertstore.Strategy, version int64, by string) (alertstore.Strategy, error) {
	st.Deleted = false
	if err := st.Validate(); err != nil {
		return st, err
	}
	return st, s.putVersion(ctx, "g", st.Name, &st, &st.Versioned, version, by)
}

// GetStrategy reads a strategy version (0: current).
func (s *AlertStore) GetStrategy(ctx context.Context, name string, version int64) (alertstore.Strategy, error) {
	var st alertstore.Strategy
	return st, s.getVersion(ctx, "g", name, version, &st, func() *alertstore.Versioned { return &st.Versioned })
}

// Strategies lists the current strategies.
func (s *AlertStore) Strategies(ctx context.Context) ([]alertstore.Strategy, error) {
	return currentOf(ctx, s, "g", func(st *alertstore.Strategy) *alertstore.Versioned { return &st.Versioned })
}

// StrategyHistory lists every version of a strategy.
func (s *AlertStore) StrategyHistory(ctx context.Context, name string) ([]alertstore.Strategy, error) {
	return historyOf[alertstore.Strategy](ctx, s, "g", name)
}

// DeleteStrategy stores a deleted version.
func (s *AlertStore) DeleteStrategy(ctx context.Context, name string, version int64, by string) error {
	st, err := s.GetStrategy(ctx, name, 0)
	if err != nil {
		return err
	}
	st.Deleted = true
	return s.putVersion(ctx, "g", name, &st, &st.Versioned, version, by)
}

// ---- events

var (
	colEvent = col(eventFamily, "j")
	colIndex = col(eventFamily, "i")
)

func eventRow(id string) string { return row("e", enc(id)) }

// eventIndexRows are the keys of an event's index rows: by time, service, type, signature.
func eventIndexRows(id, service, typ, sig string, ts int64) []string {
	t, i := inv(ts), enc(id)
	return []string{row("x", t, i), row("s", enc(service), t, i), row("t", enc(typ), t, i), row("g", enc(sig), t, i)}
}

// PutEvents stores the events and their index rows in one batch. The writes are blind: an
// id stored again (a replay) is the same event under the same keys, so it is stored once.
func (s *AlertStore) PutEvents(ctx context.Context, evs []alertstore.StoredEvent) error {
	if err := s.open(); err != nil {
		return err
	}
	var rows []hbaserest.Row
	for i := range evs {
		e := &evs[i]
		if e.ID == "" {
			return fmt.Errorf("%w: event without id", alertstore.ErrInvalid)
		}
		body, err := json.Marshal(e)
		if err != nil {
			return retry.Permanent(err)
		}
		rows = append(rows, hbaserest.Row{Key: []byte(eventRow(e.ID)), Cell: []hbaserest.Cell{cell(colEvent, body)}})
		summary := []byte(row(enc(e.Event.Service), enc(e.Event.Type), enc(e.Signature)))
		for _, k := range eventIndexRows(e.ID, e.Event.Service, e.Event.Type, e.Signature, e.Event.TimeUnixNano) {
			rows = append(rows, hbaserest.Row{Key: []byte(k), Cell: []hbaserest.Cell{cell(colIndex, summary)}})
		}
	}
	return s.put(ctx, s.events, rows)
}

// GetEvent returns one event.
func (s *AlertStore) GetEvent(ctx context.Context, id string) (alertstore.StoredEvent, error) {
	var e alertstore.StoredEvent
	if err := s.open(); err != nil {
		return e, err
	}
	cells, err := s.get(ctx, s.events, eventRow(id))
	if err != nil {
		return e, err
	}
	if cells == nil {
		return e, fmt.Errorf("%w: event %s", alertstore.ErrNotFound, id)
	}
	return e, unmarshal(cells[colEvent], &e)
}

// indexEntry is one event index row taken apart.
type indexEntry struct {
	id, service, typ, sig string
	ts                    int64
}

func parseIndex(r scanned) (indexEntry, error) {
	parts := strings.Split(r.key, ",")
	sum := strings.Split(string(r.cells[colIndex]), ",")
	if len(parts) < 3 || len(sum) != 3 {
		return indexEntry{}, retry.Permanent(fmt.Errorf("hbasestore: event index row %q", r.key))
	}
	var e indexEntry
	var errs [5]error
	e.ts, errs[0] = uninv(parts[len(parts)-2])
	e.id, errs[1] = dec(parts[len(parts)-1])
	e.service, errs[2] = dec(sum[0])
	e.typ, errs[3] = dec(sum[1])
	e.sig, errs[4] = dec(sum[2])
	if err := errors.Join(errs[:]...); err != nil {
		return e, retry.Permanent(fmt.Errorf("hbasestore: event index row %q: %w", r.key, err))
	}
	return e, nil
}

// SearchEvents scans the most selective index newest first, filters on the index rows'
// summaries and reads the matching events in one multiget per page.
func (s *AlertStore) SearchEvents(ctx context.Context, q alertstore.EventQuery) ([]alertstore.StoredEvent, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	to := q.To
	if to.IsZero() {
		to = time.Now()
	}
	prefix := "x"
	switch {
	case q.Signature != "":
		prefix = row("g", enc(q.Signature))
	case q.Service != "":
		prefix = row("s", enc(q.Service))
	case q.Type != "":
		prefix = row("t", enc(q.Type))
	}
	from := int64(0)
	if !q.From.IsZero() {
		from = q.From.UnixNano()
	}
	limit := limitOf(q.Limit)
	var out []alertstore.StoredEvent
	err := s.scan(ctx, s.events, row(prefix, inv(to.UnixNano())), prefixEnd(row(prefix, inv(from))), limit, func(page []scanned) error {
		var keys []string
		for _, r := range page {
			e, err := parseIndex(r)
			if err != nil {
				return err
			}
			if (q.Service == "" || e.service == q.Service) && (q.Type == "" || e.typ == q.Type) && (q.Signature == "" || e.sig == q.Signature) {
				keys = append(keys, eventRow(e.id))
			}
		}
		rows, err := s.multiget(ctx, s.events, keys)
		if err != nil {
			return err
		}
		for _, k := range keys {
			cells := rows[k]
			if cells == nil {
				continue // dropped meanwhile
			}
			var e alertstore.StoredEvent
			if err := unmarshal(cells[colEvent], &e); err != nil {
				return err
			}
			out = append(out, e)
			if len(out) == limit {
				return errStop
			}
		}
		return nil
	})
	return out, err
}

// DropEventsBefore deletes events older than cutoff: for each time index row past it, the
// other index rows, the event, and the time row last, so an interrupted run is finished by
// the next.
func (s *AlertStore) DropEventsBefore(ctx context.Context, cutoff time.Time) error {
	if err := s.open(); err != nil {
		return err
	}
	var drop []indexEntry
	err := s.scan(ctx, s.events, row("x", inv(cutoff.UnixNano()-1)), prefixEnd("x"), 1000, func(page []scanned) error {
		for _, r := range page {
			e, err := parseIndex(r)
			if err != nil {
				return err
			}
			drop = append(drop, e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range drop {
		idx := eventIndexRows(e.id, e.service, e.typ, e.sig, e.ts)
		for _, k := range append(append(idx[1:], eventRow(e.id)), idx[0]) {
			if err := s.deleteRow(ctx, s.events, k); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- partition state

var colState = col(stateFamily, "j")

// SavePartition stores p unless a newer state is stored, with a check-and-put on the state
// it read: a late save of a revoked instance can never overwrite a newer one.
func (s *AlertStore) SavePartition(ctx context.Context, p alertstore.PartitionState) error {
	if err := s.open(); err != nil {
		return err
	}
	key := row("p", enc(p.Group), enc(p.Topic), strconv.Itoa(p.Partition))
	body, err := json.Marshal(&p)
	if err != nil {
		return retry.Permanent(err)
	}
	for range s.races {
		cells, err := s.get(ctx, s.state, key)
		if err != nil {
			return err
		}
		old := cells[colState]
		if old != nil {
			var o alertstore.PartitionState
			if err := unmarshal(old, &o); err != nil {
				return err
			}
			if o.Offset > p.Offset {
				return nil
			}
		}
		ok, err := s.checkAndPut(ctx, s.state, key, []hbaserest.Cell{cell(colState, body)}, cell(colState, old))
		if err != nil || ok {
			return err
		}
	}
	return s.raceLost("partition state")
}

// Partition reads a partition's state.
func (s *AlertStore) Partition(ctx context.Context, group, topic string, partition int) (alertstore.PartitionState, bool, error) {
	var p alertstore.PartitionState
	if err := s.open(); err != nil {
		return p, false, err
	}
	cells, err := s.get(ctx, s.state, row("p", enc(group), enc(topic), strconv.Itoa(partition)))
	if err != nil || cells == nil {
		return p, false, err
	}
	return p, true, unmarshal(cells[colState], &p)
}
