package pebblestore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/pebbledb"
)

// AlertStore is the embedded alert store: one Pebble database in its own directory (alerts
// are not per-day data; events are dropped by DropEventsBefore). Writes go through one
// mutex, so UpdateAlert's read-modify-write is atomic.
//
// Layout (strings escaped by appendEsc, so any name is a safe key part):
//
//	a <id>                       → alert (JSON)
//	ai <^starts> <id>            → ∅   newest first
//	ak <key>                     → id of the firing alert with that key
//	ao <id>                      → ∅   the alert has undelivered notices
//	s <id>                       → silence
//	r <name> <version>           → rule version;  g <name> <version> → strategy version
//	e <id>                       → event;  ex <ts> <id>, es <service> <ts> <id>,
//	                               et <type> <ts> <id>, eg <signature> <ts> <id> → ∅
//	p <group> <topic> <partition> → partition state
type AlertStore struct {
	mu     sync.RWMutex
	db     *pebble.DB
	closed bool
}

var _ alertstore.Store = (*AlertStore)(nil)

// OpenAlerts opens (creating) the alert store in dir.
func OpenAlerts(dir string) (*AlertStore, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbledb.QuietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: open alerts %s: %w", dir, err)
	}
	return &AlertStore{db: db}, nil
}

// Close closes the database.
func (s *AlertStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

// rlock guards a read against Close; readers never call another public method.
func (s *AlertStore) rlock() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return alertstore.ErrClosed
	}
	return nil
}

func (s *AlertStore) lock() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return alertstore.ErrClosed
	}
	return nil
}

// key builds a key from a prefix and escaped parts; each part ends with 0x00 0x01 and a
// 0x00 inside a part is written 0x00 0xFF, so parts never run into each other.
func key(prefix string, parts ...any) []byte {
	b := append([]byte(prefix), 0, 1)
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			for i := 0; i < len(v); i++ {
				b = append(b, v[i])
				if v[i] == 0 {
					b = append(b, 0xFF)
				}
			}
		case uint64:
			b = binary.BigEndian.AppendUint64(b, v)
		case int64:
			b = binary.BigEndian.AppendUint64(b, uint64(v)^(1<<63))
		case int:
			b = binary.BigEndian.AppendUint64(b, uint64(int64(v))^(1<<63))
		}
		b = append(b, 0, 1)
	}
	return b
}

// lastPart is the final escaped string part of k (an id at the end of an index key).
func lastPart(k []byte) string {
	k = k[:len(k)-2] // trailing terminator
	i := len(k)
	for i >= 2 && !(k[i-2] == 0 && k[i-1] == 1) {
		i--
	}
	var out []byte
	for j := i; j < len(k); j++ {
		out = append(out, k[j])
		if k[j] == 0 && j+1 < len(k) && k[j+1] == 0xFF {
			j++
		}
	}
	return string(out)
}

func upper(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func (s *AlertStore) getJSON(k []byte, v any) (bool, error) {
	val, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer closer.Close()
	if err := json.Unmarshal(val, v); err != nil {
		return false, fmt.Errorf("pebblestore: corrupt record %q: %w", k, err)
	}
	return true, nil
}

func setJSON(b *pebble.Batch, k []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil { // a value JSON cannot hold (NaN): writing it again will not help
		return fmt.Errorf("%w: %w", alertstore.ErrInvalid, err)
	}
	return b.Set(k, buf, nil)
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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

// writeAlert stores a and keeps the indexes in step with old (nil for a new alert).
func writeAlert(b *pebble.Batch, old, a *alertstore.Alert) error {
	if err := setJSON(b, key("a", a.ID), a); err != nil {
		return err
	}
	if old == nil || !old.StartsAt.Equal(a.StartsAt) {
		if old != nil {
			_ = b.Delete(key("ai", ^uint64(old.StartsAt.UnixNano()), old.ID), nil)
		}
		_ = b.Set(key("ai", ^uint64(a.StartsAt.UnixNano()), a.ID), nil, nil)
	}
	if a.State == alertstore.StateFiring {
		_ = b.Set(key("ak", a.Key), []byte(a.ID), nil)
	} else if old != nil && old.State == alertstore.StateFiring {
		_ = b.Delete(key("ak", a.Key), nil)
	}
	if len(a.Outbox) > 0 {
		_ = b.Set(key("ao", a.ID), nil, nil)
	} else {
		_ = b.Delete(key("ao", a.ID), nil)
	}
	return nil
}

// CreateAlert stores a unless its ID exists.
func (s *AlertStore) CreateAlert(_ context.Context, a alertstore.Alert) (bool, error) {
	if err := checkAlert(&a); err != nil {
		return false, err
	}
	if err := s.lock(); err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	var old alertstore.Alert
	if ok, err := s.getJSON(key("a", a.ID), &old); err != nil || ok {
		return false, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if a.State == alertstore.StateFiring {
		// The key names one problem and the board shows it once: a new firing alert
		// resolves the one still firing under its key.
		if err := s.supersede(b, &a); err != nil {
			return false, err
		}
	}
	if err := writeAlert(b, nil, &a); err != nil {
		return false, err
	}
	return true, b.Commit(pebble.Sync)
}

func (s *AlertStore) supersede(b *pebble.Batch, a *alertstore.Alert) error {
	id, ok, err := s.openID(a.Key)
	if err != nil || !ok {
		return err
	}
	var prev alertstore.Alert
	if ok, err := s.getJSON(key("a", id), &prev); err != nil || !ok {
		return err
	}
	next := prev
	next.State, next.ResolvedAt = alertstore.StateResolved, a.StartsAt
	next.History = append(append([]alertstore.Change(nil), prev.History...),
		alertstore.Change{At: a.StartsAt, What: "resolved", Note: "superseded by " + a.ID})
	return writeAlert(b, &prev, &next)
}

func (s *AlertStore) openID(k string) (string, bool, error) {
	val, closer, err := s.db.Get(key("ak", k))
	if errors.Is(err, pebble.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	defer closer.Close()
	return string(val), true, nil
}

// UpdateAlert applies fn under the store's lock.
func (s *AlertStore) UpdateAlert(_ context.Context, id string, fn func(*alertstore.Alert) error) (alertstore.Alert, error) {
	if err := s.lock(); err != nil {
		return alertstore.Alert{}, err
	}
	defer s.mu.Unlock()
	var old, a alertstore.Alert
	// Two decodings of one record: fn changes a freely while old keeps the indexed fields.
	if ok, err := s.getJSON(key("a", id), &old); err != nil {
		return old, err
	} else if !ok {
		return old, fmt.Errorf("%w: alert %s", alertstore.ErrNotFound, id)
	}
	if _, err := s.getJSON(key("a", id), &a); err != nil {
		return old, err
	}
	if err := fn(&a); err != nil {
		return old, err
	}
	a.ID, a.Key = old.ID, old.Key
	if err := checkAlert(&a); err != nil {
		return old, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := writeAlert(b, &old, &a); err != nil {
		return old, err
	}
	return a, b.Commit(pebble.Sync)
}

// GetAlert returns one alert.
func (s *AlertStore) GetAlert(_ context.Context, id string) (alertstore.Alert, error) {
	if err := s.rlock(); err != nil {
		return alertstore.Alert{}, err
	}
	defer s.mu.RUnlock()
	return s.getAlert(id)
}

func (s *AlertStore) getAlert(id string) (alertstore.Alert, error) {
	var a alertstore.Alert
	ok, err := s.getJSON(key("a", id), &a)
	if err == nil && !ok {
		err = fmt.Errorf("%w: alert %s", alertstore.ErrNotFound, id)
	}
	return a, err
}

// OpenAlert returns the firing alert with key k.
func (s *AlertStore) OpenAlert(_ context.Context, k string) (alertstore.Alert, bool, error) {
	if err := s.rlock(); err != nil {
		return alertstore.Alert{}, false, err
	}
	defer s.mu.RUnlock()
	return s.openAlert(k)
}

func (s *AlertStore) openAlert(k string) (alertstore.Alert, bool, error) {
	id, ok, err := s.openID(k)
	if err != nil || !ok {
		return alertstore.Alert{}, false, err
	}
	a, err := s.getAlert(id)
	if errors.Is(err, alertstore.ErrNotFound) {
		return a, false, nil
	}
	return a, err == nil, err
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

// ListAlerts scans newest first and filters.
func (s *AlertStore) ListAlerts(ctx context.Context, f alertstore.AlertFilter) ([]alertstore.Alert, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if f.Key != "" && f.State == alertstore.StateFiring {
		a, ok, err := s.openAlert(f.Key)
		if err != nil || !ok {
			return nil, err
		}
		return []alertstore.Alert{a}, nil
	}
	limit := limitOf(f.Limit)
	prefix := key("ai")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper(prefix)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []alertstore.Alert
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a, err := s.getAlert(lastPart(it.Key()))
		if errors.Is(err, alertstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if (f.State == "" || a.State == f.State) && (f.Level == "" || a.Level == f.Level) &&
			(f.Service == "" || a.Service == f.Service) && (f.Kind == "" || a.Kind == f.Kind) &&
			(f.Key == "" || a.Key == f.Key) {
			out = append(out, a)
		}
	}
	return out, it.Error()
}

// PendingAlerts lists alerts with a notice due at now.
func (s *AlertStore) PendingAlerts(_ context.Context, now time.Time, limit int) ([]alertstore.Alert, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	limit = limitOf(limit)
	prefix := key("ao")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper(prefix)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []alertstore.Alert
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		a, err := s.getAlert(lastPart(it.Key()))
		if errors.Is(err, alertstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, n := range a.Outbox {
			if !n.NextAt.After(now) {
				out = append(out, a)
				break
			}
		}
	}
	return out, it.Error()
}

// ---- silences

// PutSilence validates and stores a silence.
func (s *AlertStore) PutSilence(_ context.Context, sil alertstore.Silence) (alertstore.Silence, error) {
	if err := sil.Validate(); err != nil {
		return sil, err
	}
	if sil.ID == "" {
		sil.ID = newID()
	}
	if err := s.lock(); err != nil {
		return sil, err
	}
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	if err := setJSON(b, key("s", sil.ID), sil); err != nil {
		return sil, err
	}
	return sil, b.Commit(pebble.Sync)
}

// GetSilence returns one silence.
func (s *AlertStore) GetSilence(_ context.Context, id string) (alertstore.Silence, error) {
	if err := s.rlock(); err != nil {
		return alertstore.Silence{}, err
	}
	defer s.mu.RUnlock()
	var sil alertstore.Silence
	ok, err := s.getJSON(key("s", id), &sil)
	if err == nil && !ok {
		err = fmt.Errorf("%w: silence %s", alertstore.ErrNotFound, id)
	}
	return sil, err
}

// Silences lists every silence, newest end first.
func (s *AlertStore) Silences(_ context.Context) ([]alertstore.Silence, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []alertstore.Silence
	err := scanJSON(s.db, key("s"), func(_ []byte, v []byte) error {
		var sil alertstore.Silence
		if err := json.Unmarshal(v, &sil); err != nil {
			return err
		}
		out = append(out, sil)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].EndsAt.After(out[j].EndsAt) })
	return out, err
}

func scanJSON(db *pebble.DB, prefix []byte, fn func(k, v []byte) error) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// ---- rules and strategies: every version kept, the current one is the highest

// putVersion stores obj as version current+1 of name under prefix p.
func (s *AlertStore) putVersion(p, name string, obj any, meta *alertstore.Versioned, version int64, by string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	cur, err := s.currentVersion(p, name)
	if err != nil {
		return err
	}
	if version != cur {
		return fmt.Errorf("%w: %s %s is at version %d, not %d", alertstore.ErrConflict, p, name, cur, version)
	}
	meta.Version, meta.UpdatedAt, meta.UpdatedBy = cur+1, time.Now().UTC(), by
	b := s.db.NewBatch()
	defer b.Close()
	if err := setJSON(b, key(p, name, meta.Version), obj); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

func (s *AlertStore) currentVersion(p, name string) (int64, error) {
	prefix := key(p, name)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper(prefix)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	k := it.Key()
	v := binary.BigEndian.Uint64(k[len(k)-10:len(k)-2]) ^ (1 << 63)
	return int64(v), nil
}

// getVersion reads version (0: current) of name into v; ErrNotFound when absent or deleted.
func (s *AlertStore) getVersion(p, name string, version int64, v any, meta func() *alertstore.Versioned) error {
	if version <= 0 {
		cur, err := s.currentVersion(p, name)
		if err != nil {
			return err
		}
		version = cur
	}
	ok, err := s.getJSON(key(p, name, version), v)
	if err != nil {
		return err
	}
	if !ok || version == 0 || meta().Deleted {
		return fmt.Errorf("%w: %s %s version %d", alertstore.ErrNotFound, p, name, version)
	}
	return nil
}

// history reads every version of name, oldest first.
func history[T any](s *AlertStore, p, name string) ([]T, error) {
	var out []T
	err := scanJSON(s.db, key(p, name), func(_ []byte, v []byte) error {
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%w: %s %s", alertstore.ErrNotFound, p, name)
	}
	return out, err
}

// current reads the current version of every name, deleted ones left out.
func current[T any](s *AlertStore, p string, meta func(*T) *alertstore.Versioned, name func(*T) string) ([]T, error) {
	var out []T
	err := scanJSON(s.db, key(p), func(_ []byte, v []byte) error {
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if n := len(out); n > 0 && name(&out[n-1]) == name(&t) {
			out[n-1] = t // versions of one name are adjacent, ascending
		} else {
			out = append(out, t)
		}
		return nil
	})
	kept := out[:0]
	for i := range out {
		if !meta(&out[i]).Deleted {
			kept = append(kept, out[i])
		}
	}
	return kept, err
}

// PutRule validates r and stores it as the next version.
func (s *AlertStore) PutRule(_ context.Context, r alertstore.Rule, version int64, by string) (alertstore.Rule, error) {
	r.Deleted = false
	if err := r.Validate(); err != nil {
		return r, err
	}
	err := s.putVersion("r", r.Name, &r, &r.Versioned, version, by)
	return r, err
}

// GetRule reads a rule version (0: current).
func (s *AlertStore) GetRule(_ context.Context, name string, version int64) (alertstore.Rule, error) {
	if err := s.rlock(); err != nil {
		return alertstore.Rule{}, err
	}
	defer s.mu.RUnlock()
	var r alertstore.Rule
	err := s.getVersion("r", name, version, &r, func() *alertstore.Versioned { return &r.Versioned })
	return r, err
}

// Rules lists the current rules.
func (s *AlertStore) Rules(context.Context) ([]alertstore.Rule, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return current(s, "r", func(r *alertstore.Rule) *alertstore.Versioned { return &r.Versioned },
		func(r *alertstore.Rule) string { return r.Name })
}

// RuleHistory lists every version of a rule.
func (s *AlertStore) RuleHistory(_ context.Context, name string) ([]alertstore.Rule, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return history[alertstore.Rule](s, "r", name)
}

// DeleteRule stores a deleted version (the history keeps the rule).
func (s *AlertStore) DeleteRule(ctx context.Context, name string, version int64, by string) error {
	r, err := s.GetRule(ctx, name, 0)
	if err != nil {
		return err
	}
	r.Deleted = true
	return s.putVersion("r", name, &r, &r.Versioned, version, by)
}

// PutStrategy validates st and stores it as the next version.
func (s *AlertStore) PutStrategy(_ context.Context, st alertstore.Strategy, version int64, by string) (alertstore.Strategy, error) {
	st.Deleted = false
	if err := st.Validate(); err != nil {
		return st, err
	}
	err := s.putVersion("g", st.Name, &st, &st.Versioned, version, by)
	return st, err
}

// GetStrategy reads a strategy version (0: current).
func (s *AlertStore) GetStrategy(_ context.Context, name string, version int64) (alertstore.Strategy, error) {
	if err := s.rlock(); err != nil {
		return alertstore.Strategy{}, err
	}
	defer s.mu.RUnlock()
	var st alertstore.Strategy
	err := s.getVersion("g", name, version, &st, func() *alertstore.Versioned { return &st.Versioned })
	return st, err
}

// Strategies lists the current strategies.
func (s *AlertStore) Strategies(context.Context) ([]alertstore.Strategy, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return current(s, "g", func(st *alertstore.Strategy) *alertstore.Versioned { return &st.Versioned },
		func(st *alertstore.Strategy) string { return st.Name })
}

// StrategyHistory lists every version of a strategy.
func (s *AlertStore) StrategyHistory(_ context.Context, name string) ([]alertstore.Strategy, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return history[alertstore.Strategy](s, "g", name)
}

// DeleteStrategy stores a deleted version.
func (s *AlertStore) DeleteStrategy(ctx context.Context, name string, version int64, by string) error {
	st, err := s.GetStrategy(ctx, name, 0)
	if err != nil {
		return err
	}
	st.Deleted = true
	return s.putVersion("g", name, &st, &st.Versioned, version, by)
}

// ---- events

// PutEvents stores events with their indexes. The writes are blind: an id stored again
// (a replay) is the same event under the same keys, so it is still stored once.
func (s *AlertStore) PutEvents(_ context.Context, evs []alertstore.StoredEvent) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	for i := range evs {
		e := &evs[i]
		if e.ID == "" {
			return fmt.Errorf("%w: event without id", alertstore.ErrInvalid)
		}
		if err := setJSON(b, key("e", e.ID), e); err != nil {
			return err
		}
		ts := e.Event.TimeUnixNano
		_ = b.Set(key("ex", ts, e.ID), nil, nil)
		_ = b.Set(key("es", e.Event.Service, ts, e.ID), nil, nil)
		_ = b.Set(key("et", e.Event.Type, ts, e.ID), nil, nil)
		_ = b.Set(key("eg", e.Signature, ts, e.ID), nil, nil)
	}
	return b.Commit(pebble.Sync)
}

// GetEvent returns one event.
func (s *AlertStore) GetEvent(_ context.Context, id string) (alertstore.StoredEvent, error) {
	if err := s.rlock(); err != nil {
		return alertstore.StoredEvent{}, err
	}
	defer s.mu.RUnlock()
	var e alertstore.StoredEvent
	ok, err := s.getJSON(key("e", id), &e)
	if err == nil && !ok {
		err = fmt.Errorf("%w: event %s", alertstore.ErrNotFound, id)
	}
	return e, err
}

// SearchEvents walks the most selective index newest first and checks the other fields.
func (s *AlertStore) SearchEvents(ctx context.Context, q alertstore.EventQuery) ([]alertstore.StoredEvent, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	to := q.To
	if to.IsZero() {
		to = time.Now()
	}
	idx, part := "ex", []any{}
	switch {
	case q.Signature != "":
		idx, part = "eg", []any{q.Signature}
	case q.Service != "":
		idx, part = "es", []any{q.Service}
	case q.Type != "":
		idx, part = "et", []any{q.Type}
	}
	from := int64(0)
	if !q.From.IsZero() {
		from = q.From.UnixNano()
	}
	lo := key(idx, append(part, from)...)
	hi := upper(key(idx, append(part, to.UnixNano())...))
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	limit := limitOf(q.Limit)
	var out []alertstore.StoredEvent
	for ok := it.Last(); ok && len(out) < limit; ok = it.Prev() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var e alertstore.StoredEvent
		found, err := s.getJSON(key("e", lastPart(it.Key())), &e)
		if err != nil {
			return nil, err
		}
		if found && (q.Service == "" || e.Event.Service == q.Service) && (q.Type == "" || e.Event.Type == q.Type) &&
			(q.Signature == "" || e.Signature == q.Signature) {
			out = append(out, e)
		}
	}
	return out, it.Error()
}

// DropEventsBefore deletes events (and their index entries) older than cutoff.
func (s *AlertStore) DropEventsBefore(ctx context.Context, cutoff time.Time) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: key("ex"), UpperBound: key("ex", cutoff.UnixNano())})
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return err
		}
		id := lastPart(it.Key())
		var e alertstore.StoredEvent
		if ok, err := s.getJSON(key("e", id), &e); err != nil {
			it.Close()
			return err
		} else if ok {
			ts := e.Event.TimeUnixNano
			_ = b.Delete(key("e", id), nil)
			_ = b.Delete(key("es", e.Event.Service, ts, id), nil)
			_ = b.Delete(key("et", e.Event.Type, ts, id), nil)
			_ = b.Delete(key("eg", e.Signature, ts, id), nil)
		}
		_ = b.Delete(append([]byte(nil), it.Key()...), nil)
	}
	if err := it.Close(); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// ---- partition state

// SavePartition stores p unless a newer state is stored.
func (s *AlertStore) SavePartition(_ context.Context, p alertstore.PartitionState) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	k := key("p", p.Group, p.Topic, p.Partition)
	var old alertstore.PartitionState
	if ok, err := s.getJSON(k, &old); err != nil {
		return err
	} else if ok && old.Offset > p.Offset {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := setJSON(b, k, p); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// Partition reads a partition's state.
func (s *AlertStore) Partition(_ context.Context, group, topic string, partition int) (alertstore.PartitionState, bool, error) {
	if err := s.rlock(); err != nil {
		return alertstore.PartitionState{}, false, err
	}
	defer s.mu.RUnlock()
	var p alertstore.PartitionState
	ok, err := s.getJSON(key("p", group, topic, partition), &p)
	return p, ok, err
}
