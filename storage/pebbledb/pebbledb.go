// Package pebbledb is the embedded engine every Pebble backend shares: one Pebble database
// per UTC day under a directory, opened on demand, with one block cache for all of them.
// Retention closes and removes whole days, like deleting daily Elasticsearch indices; a crash
// mid-removal leaves a marked directory that the next Open finishes removing.
package pebbledb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"

	"github.com/mercury-apm/mercury/internal/retry"
)

var (
	// ErrClosed: the databases were closed.
	ErrClosed = errors.New("pebbledb: closed")
	// ErrLocked: another process (or another Open in this one) holds the directory.
	ErrLocked = errors.New("locked by another process: an embedded store has one user")
)

const dayLayout = "2006-01-02"

// dropPrefix marks a day directory being removed; Open finishes the removal after a crash.
const dropPrefix = ".drop-"

// Options tune the databases; the zero value is usable.
type Options struct {
	// CacheBytes is the block cache shared by all day databases (0 means 128 MiB).
	CacheBytes int64
	// MemTableBytes is each day database's memtable size (0 means 32 MiB).
	MemTableBytes uint64
	// Comparer orders the keys (nil: Pebble's default). Its Name is stored in each database.
	Comparer *pebble.Comparer
}

// Days is a set of day databases. Safe for concurrent use.
type Days struct {
	dir   string
	opts  Options
	cache *pebble.Cache
	lock  *os.File // flock'ed for the whole life of the set

	// mu guards days: readers hold it shared for their whole run, DropBefore and Close hold
	// it exclusively, so a database is never closed under a reader.
	mu     sync.RWMutex
	days   map[int64]*pebble.DB // key: Unix seconds of the UTC midnight
	closed bool
}

// Open opens (creating if needed) dir and every day database found there.
func Open(dir string, opts Options) (*Days, error) {
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 128 << 20
	}
	if opts.MemTableBytes == 0 {
		opts.MemTableBytes = 32 << 20
	}
	if opts.Comparer == nil {
		opts.Comparer = pebble.DefaultComparer
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pebbledb: %w", err)
	}
	// Each day database has its own lock, but days open lazily: without a lock of the whole
	// directory two processes could share a store until they both touch the same day.
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pebbledb: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("pebbledb: %s: %w (%w)", dir, ErrLocked, err)
	}
	d := &Days{dir: dir, opts: opts, cache: pebble.NewCache(opts.CacheBytes), lock: lock, days: map[int64]*pebble.DB{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		d.cache.Unref()
		return nil, fmt.Errorf("pebbledb: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, dropPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				return nil, errors.Join(fmt.Errorf("pebbledb: %w", err), d.Close())
			}
			continue
		}
		day, err := time.Parse(dayLayout, name)
		if err != nil || !e.IsDir() {
			continue
		}
		if _, err := d.openDay(day.Unix()); err != nil {
			return nil, errors.Join(err, d.Close())
		}
	}
	return d, nil
}

// Day is the UTC midnight (Unix seconds) of a Unix-nanosecond time: the database it goes to.
func Day(unixNano int64) int64 {
	return time.Unix(0, unixNano).UTC().Truncate(24 * time.Hour).Unix()
}

func (d *Days) openDay(day int64) (*pebble.DB, error) {
	o := &pebble.Options{
		Cache:        d.cache,
		Comparer:     d.opts.Comparer,
		MemTableSize: d.opts.MemTableBytes,
		// Writes come in time order per prefix; larger L0 thresholds keep ingest from
		// stalling on compactions on a small machine.
		L0CompactionThreshold: 4,
		L0StopWritesThreshold: 24,
		Logger:                QuietLogger{},
	}
	o.Levels = make([]pebble.LevelOptions, 7)
	for i := range o.Levels {
		// Default 4 KB blocks: reads are point lookups and short scans, and a GetTrace
		// profile with 32 KB blocks spent most of its time decompressing whole blocks.
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	name := time.Unix(day, 0).UTC().Format(dayLayout)
	db, err := pebble.Open(filepath.Join(d.dir, name), o)
	if err != nil {
		return nil, fmt.Errorf("pebbledb: open day %s: %w", name, err)
	}
	d.days[day] = db
	return db, nil
}

// QuietLogger drops Pebble's informational lines, for every Pebble database of the project;
// fatal errors still panic as Pebble expects.
type QuietLogger struct{}

func (QuietLogger) Infof(string, ...interface{})              {}
func (QuietLogger) Errorf(string, ...interface{})             {}
func (QuietLogger) Fatalf(format string, args ...interface{}) { panic(fmt.Sprintf(format, args...)) }

// Close closes every day database.
func (d *Days) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for day, db := range d.days {
		errs = append(errs, db.Close())
		delete(d.days, day)
	}
	d.cache.Unref()
	errs = append(errs, d.lock.Close()) // releases the flock
	return errors.Join(errs...)
}

// List is the stored UTC days, newest first.
func (d *Days) List() []time.Time {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]time.Time, 0, len(d.days))
	for _, day := range d.newest() {
		out = append(out, time.Unix(day, 0).UTC())
	}
	return out
}

func (d *Days) newest() []int64 {
	days := make([]int64, 0, len(d.days))
	for day := range d.days {
		days = append(days, day)
	}
	slices.Sort(days)
	slices.Reverse(days)
	return days
}

// View is what a reader sees while Read holds the databases open.
type View struct{ d *Days }

// Newest lists the open days (UTC midnights, Unix seconds), newest first.
func (v View) Newest() []int64 { return v.d.newest() }

// DB is the database of day, or nil when there is none.
func (v View) DB(day int64) *pebble.DB { return v.d.days[day] }

// Read runs fn while no database can be closed.
func (d *Days) Read(fn func(View) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return ErrClosed
	}
	return fn(View{d})
}

// Ensure opens the databases of the given days that are not open yet. A failure is
// retryable (a full disk, too many open files).
func (d *Days) Ensure(days []int64) error {
	d.mu.RLock()
	missing := slices.ContainsFunc(days, func(day int64) bool { return d.days[day] == nil })
	d.mu.RUnlock()
	if !missing {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	for _, day := range days {
		if d.days[day] == nil {
			if _, err := d.openDay(day); err != nil {
				return retry.Retryable(err)
			}
		}
	}
	return nil
}

// DropBefore closes and removes every day that ended at or before cutoff. The directory is
// renamed first, so a crash mid-removal leaves no half-deleted day that Open would reopen.
func (d *Days) DropBefore(ctx context.Context, cutoff time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	for day, db := range d.days {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Unix(day, 0).Add(24 * time.Hour).After(cutoff) {
			continue
		}
		name := time.Unix(day, 0).UTC().Format(dayLayout)
		delete(d.days, day)
		if err := db.Close(); err != nil {
			return fmt.Errorf("pebbledb: close day %s: %w", name, err)
		}
		tmp := filepath.Join(d.dir, dropPrefix+name)
		if err := os.Rename(filepath.Join(d.dir, name), tmp); err != nil {
			return fmt.Errorf("pebbledb: drop day %s: %w", name, err)
		}
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("pebbledb: drop day %s: %w", name, err)
		}
	}
	return nil
}
