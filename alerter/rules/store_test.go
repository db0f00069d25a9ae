package rules_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/alerter/rules"
	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

// TestStoreHistory: the rules read a stored minute (yesterday's, for a baseline) with its
// counts and its latency quantiles.
func TestStoreHistory(t *testing.T) {
	db, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := metric.Labels{Domain: "shop", Service: "payment", Operation: "POST /pay", Kind: metric.Kind(1)}
	minute := time.Now().Add(-24 * time.Hour).Truncate(time.Minute).Unix()
	p := metricstore.Point{SeriesID: l.ID(), Minute: minute, Revision: 1}
	for i := 1; i <= 1000; i++ {
		p.Stats.Add(int64(i)*int64(time.Millisecond), metric.Weight(1), i%10 == 0)
	}
	ctx := context.Background()
	if err := db.Upsert(ctx, []metricstore.Upsert{{Labels: l, Point: p}}); err != nil {
		t.Fatal(err)
	}
	h := rules.StoreHistory{Store: db}
	got, ok, err := h.Point(ctx, l.ID(), minute)
	if err != nil || !ok || got.Count != 1000 || got.Errors != 100 {
		t.Fatalf("point: %+v %v %v", got, ok, err)
	}
	if _, ok, err := h.Point(ctx, l.ID(), minute-60); ok || err != nil {
		t.Fatalf("a minute without traffic: %v %v", ok, err)
	}
	q, err := rules.SketchQuantiles(&got)
	if err != nil {
		t.Fatal(err)
	}
	if p99 := q.Quantile(0.99) / float64(time.Millisecond); math.Abs(p99-990)/990 > 0.01 {
		t.Fatalf("p99 %v ms, want 990 within 1 %%", p99)
	}
	got.Sketch = []byte{0xff}
	if _, err := rules.SketchQuantiles(&got); err == nil {
		t.Fatal("a corrupt sketch was read")
	}
}
