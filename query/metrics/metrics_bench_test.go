package metrics_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/cputime"
	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/query/metrics"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

// BenchmarkQuery24h answers a 24-hour, 1-minute-step p99 (and qps) for a service of 8
// series (4 operations × 2 hosts), every minute holding ~300 spans of lognormal latency:
// 11,520 stored points read and merged per query, from an embedded store on disk.
func BenchmarkQuery24h(b *testing.B) {
	store, err := pebblestore.Open(b.TempDir(), pebblestore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	day := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC) // crosses midnight: two day databases
	var ups []metricstore.Upsert
	for op := range 4 {
		for host := range 2 {
			l := metric.Labels{Domain: "shop", Service: "checkout", Operation: fmt.Sprintf("POST /op%d", op), Kind: schemas.KindServer, Host: fmt.Sprintf("h%d", host)}
			for m := range 1440 {
				p := metricstore.Point{SeriesID: l.ID(), Minute: day.Unix() + int64(60*m), Revision: 1, State: make([]byte, 20)}
				for range 250 + rng.IntN(100) {
					p.Stats.Add(int64(math.Exp(rng.NormFloat64()*0.8+15)), metric.Units, rng.IntN(50) == 0)
				}
				ups = append(ups, metricstore.Upsert{Labels: l, Point: p})
			}
		}
	}
	ctx := context.Background()
	if err := store.Upsert(ctx, ups); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"p99", "qps"} {
		b.Run(name, func(b *testing.B) {
			q := metrics.Query{Filter: metricstore.Filter{Service: "checkout"}, Kind: schemas.KindServer, Metric: name,
				Start: day, End: day.Add(24 * time.Hour), Step: time.Minute}
			b.ReportAllocs()
			c0 := cputime.Used()
			for b.Loop() {
				res, err := metrics.Run(ctx, store, q)
				if err != nil || len(res.Points) != 1440 || res.Series != 8 {
					b.Fatalf("%v: %d points, %d series", err, len(res.Points), res.Series)
				}
			}
			b.ReportMetric(float64((cputime.Used()-c0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}
