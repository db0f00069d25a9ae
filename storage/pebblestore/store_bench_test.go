package pebblestore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// Workload: traces of spansPerTrace spans; the root carries a unique order_id and a user_id
// from a pool sized so that a user has about 20 traces (one result page); 40 services, 400
// operations, 1 % errors, starts spread evenly over two days.
const (
	spansPerTrace = 10
	tracesPerUser = 20
	batchSize     = 1000
)

var benchDay = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

type workload struct {
	r     *rand.Rand
	users int
	step  int64 // nanoseconds between trace starts
	next  int   // next trace number
}

func traceID(n int) (id tracestore.TraceID) {
	// Deterministic but spread: queries can name trace n without keeping a list.
	r := rand.New(rand.NewPCG(uint64(n), 0x9e3779b97f4a7c15))
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return id
}

// batch appends the spans of the next traces until n spans.
func (w *workload) batch(dst []schemas.Span, n int) []schemas.Span {
	for len(dst) < n {
		t := w.next
		w.next++
		id := traceID(t)
		// Starts advance with the trace number, as live traffic does: a batch falls in one
		// day, and the whole data set spans two days.
		start := benchDay.UnixNano() + int64(t)*w.step
		var root schemas.SpanID
		for i := 0; i < spansPerTrace; i++ {
			sp := schemas.Span{TraceID: id, Domain: "shop", Kind: schemas.KindServer, Host: "host-" + strconv.Itoa(w.r.IntN(200)),
				StartUnixNano: start + int64(i)*int64(time.Millisecond), DurationNano: w.r.Int64N(int64(time.Second)),
				Status: schemas.StatusOK, SampleRate: 1, AgentVersion: "1.0.0"}
			svc := w.r.IntN(40)
			sp.Service = "svc-" + strconv.Itoa(svc)
			sp.Operation = "op-" + strconv.Itoa(svc*10+w.r.IntN(10))
			for j := range sp.SpanID {
				sp.SpanID[j] = byte(w.r.Uint32())
			}
			if i == 0 {
				root = sp.SpanID
				sp.BusinessKeys = []schemas.KV{{Key: "order_id", Value: strconv.Itoa(t)}, {Key: "user_id", Value: strconv.Itoa(t % w.users)}}
			} else {
				sp.ParentSpanID = root
			}
			if w.r.IntN(100) == 0 {
				// 20 exception types, so one type matches 1 span in 2,000.
				sp.Status, sp.ErrorType = schemas.StatusError, "TimeoutError-"+strconv.Itoa(w.r.IntN(20))
			}
			if w.r.IntN(50) == 0 {
				sp.Events = []schemas.SpanEvent{{TimeUnixNano: sp.StartUnixNano, Name: "cache.miss-" + strconv.Itoa(w.r.IntN(20))}}
			}
			sp.Tags = []schemas.KV{{Key: "http.method", Value: "GET"}, {Key: "peer", Value: "10.0.0." + strconv.Itoa(w.r.IntN(255))}}
			dst = append(dst, sp)
		}
	}
	return dst
}

func newWorkload(totalSpans int) *workload {
	traces := max(1, totalSpans/spansPerTrace)
	return &workload{r: rand.New(rand.NewPCG(1, 2)), users: max(1, traces/tracesPerUser), step: int64(48*time.Hour) / int64(traces)}
}

// BenchmarkIngest measures the collector's write path: batches of 1000 spans, rows and
// index, Sync durability, from 1 or 4 concurrent writers (the collector commits partitions
// concurrently; Pebble then shares one WAL fsync among the batches committed together).
func BenchmarkIngest(b *testing.B) {
	for _, mode := range []string{"WriteSpans", "PutSpans+IndexSpans"} {
		for _, writers := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/writers=%d", mode, writers), func(b *testing.B) {
				s, err := pebblestore.Open(b.TempDir(), pebblestore.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				w := newWorkload(1_000_000)
				batches := make([][]schemas.Span, min(b.N, 64))
				for i := range batches {
					batches[i] = w.batch(nil, batchSize)
				}
				ctx := context.Background()
				io0 := writeBytes()
				var next atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				var g errgroup
				for range writers {
					g.Go(func() error {
						for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
							batch := batches[i%int64(len(batches))]
							if mode == "WriteSpans" {
								if err := s.WriteSpans(ctx, batch); err != nil {
									return err
								}
							} else if err := s.PutSpans(ctx, batch); err != nil {
								return err
							} else if err := s.IndexSpans(ctx, batch); err != nil {
								return err
							}
						}
						return nil
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "spans/s")
				if io0 >= 0 {
					b.ReportMetric(float64(writeBytes()-io0)/float64(b.N*batchSize), "disk-B/span")
				}
			})
		}
	}
}

// writeBytes is this process's bytes written to storage so far (Linux), or -1.
func writeBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// errgroup is the few lines of golang.org/x/sync/errgroup this file needs.
type errgroup struct {
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

func (g *errgroup) Go(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.once.Do(func() { g.err = err })
		}
	}()
}

func (g *errgroup) Wait() error { g.wg.Wait(); return g.err }

// The query dataset is built once per process: MERCURY_BENCH_SPANS spans (default 200,000),
// in MERCURY_BENCH_DIR if set (kept and reused across runs) or a temporary directory.
var bench struct {
	once  sync.Once
	store *pebblestore.Store
	w     *workload
	tmp   string
	err   error
}

func benchStore(b *testing.B) (*pebblestore.Store, *workload) {
	bench.once.Do(func() {
		n := 200_000
		if v := os.Getenv("MERCURY_BENCH_SPANS"); v != "" {
			n, bench.err = strconv.Atoi(v)
			if bench.err != nil {
				return
			}
		}
		dir := os.Getenv("MERCURY_BENCH_DIR")
		if dir == "" {
			dir, bench.err = os.MkdirTemp("", "mercury-bench-")
			bench.tmp = dir
		}
		if bench.err != nil {
			return
		}
		// v2: the workload carries error types and events.
		marker := filepath.Join(dir, fmt.Sprintf(".complete-v2-%d", n))
		_, statErr := os.Stat(marker)
		bench.store, bench.err = pebblestore.Open(dir, pebblestore.Options{CacheBytes: 512 << 20, MemTableBytes: 64 << 20})
		bench.w = newWorkload(n)
		if bench.err != nil || statErr == nil {
			bench.w.next = n / spansPerTrace
			return
		}
		start := time.Now()
		ctx := context.Background()
		// One generator, four writers: Pebble shares WAL syncs among concurrent commits.
		ch := make(chan []schemas.Span, 4)
		var g errgroup
		for range 4 {
			g.Go(func() error {
				for batch := range ch {
					if err := bench.store.WriteSpans(ctx, batch); err != nil {
						for range ch { // drain so the generator finishes
						}
						return err
					}
				}
				return nil
			})
		}
		for written := 0; written < n; written += batchSize {
			ch <- bench.w.batch(make([]schemas.Span, 0, batchSize), batchSize)
		}
		close(ch)
		bench.err = g.Wait()
		if bench.err == nil {
			bench.err = os.WriteFile(marker, nil, 0o644)
		}
		fmt.Fprintf(os.Stderr, "built %d spans in %s (%.0f spans/s) in %s\n", n, time.Since(start).Round(time.Second), float64(n)/time.Since(start).Seconds(), dir)
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	if !bench.store.Settle(time.Minute) {
		b.Log("compactions still running: read latencies include their interference")
	}
	return bench.store, bench.w
}

func removeBenchData() {
	if bench.store != nil {
		_ = bench.store.Close()
	}
	if bench.tmp != "" {
		_ = os.RemoveAll(bench.tmp)
	}
}

// latencies runs op b.N times and reports p50/p99 in milliseconds.
func latencies(b *testing.B, op func(r *rand.Rand) error) {
	r := rand.New(rand.NewPCG(3, 4))
	d := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := op(r); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(d)
	pct := func(p float64) float64 { return float64(d[min(len(d)-1, int(p*float64(len(d))))]) / 1e6 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

func BenchmarkQuery(b *testing.B) {
	s, w := benchStore(b)
	traces := w.next
	ctx := context.Background()
	b.Run("SearchBusinessKeyPage", func(b *testing.B) {
		latencies(b, func(r *rand.Rand) error {
			q := tracestore.Query{BusinessKeys: []schemas.KV{{Key: "user_id", Value: strconv.Itoa(r.IntN(w.users))}}}
			refs, err := s.Search(ctx, q)
			if err == nil && len(refs) == 0 {
				err = fmt.Errorf("no hits for %v", q.BusinessKeys)
			}
			return err
		})
	})
	b.Run("SearchBusinessKeyUnique", func(b *testing.B) {
		latencies(b, func(r *rand.Rand) error {
			refs, err := s.Search(ctx, tracestore.Query{BusinessKeys: []schemas.KV{{Key: "order_id", Value: strconv.Itoa(r.IntN(traces))}}})
			if err == nil && len(refs) != 1 {
				err = fmt.Errorf("%d hits", len(refs))
			}
			return err
		})
	})
	b.Run("SearchServiceOperation", func(b *testing.B) {
		latencies(b, func(r *rand.Rand) error {
			svc := r.IntN(40)
			_, err := s.Search(ctx, tracestore.Query{Service: "svc-" + strconv.Itoa(svc), Operation: "op-" + strconv.Itoa(svc*10+r.IntN(10)), MinDuration: 500 * time.Millisecond})
			return err
		})
	})
	b.Run("SearchErrorType", func(b *testing.B) {
		latencies(b, func(r *rand.Rand) error {
			refs, err := s.Search(ctx, tracestore.Query{ErrorType: "TimeoutError-" + strconv.Itoa(r.IntN(20))})
			if err == nil && len(refs) == 0 {
				err = errors.New("no hits")
			}
			return err
		})
	})
	b.Run("SearchEvent", func(b *testing.B) {
		latencies(b, func(r *rand.Rand) error {
			refs, err := s.Search(ctx, tracestore.Query{Event: "cache.miss-" + strconv.Itoa(r.IntN(20))})
			if err == nil && len(refs) == 0 {
				err = errors.New("no hits")
			}
			return err
		})
	})
	b.Run("GetTrace", func(b *testing.B) {
		latencies(b, func(r *rand.Rand) error {
			spans, err := s.GetTrace(ctx, traceID(r.IntN(traces)))
			if err == nil && len(spans) != spansPerTrace {
				err = fmt.Errorf("%d spans", len(spans))
			}
			return err
		})
	})
	b.Run("FindTraces", func(b *testing.B) {
		st := tracestore.New(s, s)
		latencies(b, func(r *rand.Rand) error {
			_, err := st.FindTraces(ctx, tracestore.Query{BusinessKeys: []schemas.KV{{Key: "user_id", Value: strconv.Itoa(r.IntN(w.users))}}})
			return err
		})
	})
}
