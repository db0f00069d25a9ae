package pebblestore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/storetest"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	removeBenchData()
	if err := goleak.Find(); err != nil && code == 0 {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		code = 1
	}
	os.Exit(code)
}

func open(t *testing.T, dir string) *pebblestore.Store {
	t.Helper()
	s, err := pebblestore.Open(dir, pebblestore.Options{CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestIndex(t *testing.T) {
	storetest.RunIndex(t, func(t *testing.T) tracestore.Index { return open(t, t.TempDir()) })
}

func TestRows(t *testing.T) {
	storetest.RunRows(t, func(t *testing.T) tracestore.Rows { return open(t, t.TempDir()) })
}

func TestStore(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T) *tracestore.Store {
		s := open(t, t.TempDir())
		return tracestore.New(s, s)
	})
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	storetest.RunRetention(t, tracestore.New(s, s), s)
	if _, err := os.Stat(filepath.Join(dir, "2001-02-03")); !os.IsNotExist(err) {
		t.Fatalf("dropped day directory still there: %v", err)
	}
	if days := s.Days(); len(days) != 1 || !days[0].Equal(time.Date(2001, 2, 4, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("days after drop: %v", days)
	}
}

// Data survives a reopen, and a removal interrupted by a crash is finished by Open.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	f := storetest.NewFixture()
	s, err := pebblestore.Open(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.WriteSpans(ctx, f.Spans); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".drop-1999-01-01", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	spans, err := s.GetTrace(ctx, f.CrossDay)
	if err != nil || len(spans) != 2 {
		t.Fatalf("after reopen: %d spans, %v", len(spans), err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".drop-1999-01-01")); !os.IsNotExist(err) {
		t.Fatalf("leftover drop directory: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTrace(ctx, f.T1); !errors.Is(err, tracestore.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// Writers, readers and retention run together without races or use of a closed database.
func TestConcurrentWithRetention(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	f := storetest.NewFixture()
	old := slices.Clone(f.Spans)
	for i := range old {
		old[i].StartUnixNano = time.Date(2001, 1, 1, 0, 0, i, 0, time.UTC).UnixNano()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				var err error
				switch i % 3 {
				case 0:
					err = s.WriteSpans(ctx, old)
				case 1:
					err = s.WriteSpans(ctx, f.Spans)
				default:
					_, err = s.Search(ctx, tracestore.Query{Service: f.Gateway})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		if err := s.DropBefore(ctx, time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
			t.Fatal(err)
		}
		runtime.Gosched()
	}
	close(done)
	wg.Wait()
	if spans, err := s.GetTrace(ctx, f.CrossDay); err != nil || len(spans) != 2 {
		t.Fatalf("GetTrace: %d spans, %v", len(spans), err)
	}
}
