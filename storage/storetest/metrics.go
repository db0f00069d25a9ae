package storetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// MetricsFactory returns a ready metric store; it registers its own cleanup. The suite uses
// a fresh domain per run, so a store over shared data (a real HBase) works.
type MetricsFactory func(t *testing.T) metricstore.Store

// metricFixture is a few series with points on both sides of Midnight.
type metricFixture struct {
	domain             string
	op, op2, host2     metric.Labels
	edge, dyed         metric.Labels
	minutes            []int64 // of op: the last 3 minutes before Midnight and the first 2 after
	before, after, all time.Time
}

func newMetricFixture() *metricFixture {
	d := fmt.Sprintf("conf-%x", rand.Uint64())
	f := &metricFixture{domain: d,
		op:    metric.Labels{Domain: d, Service: "order", Operation: "POST /orders/{id}", Kind: schemas.KindServer, Host: "h1"},
		op2:   metric.Labels{Domain: d, Service: "order", Operation: "GET /orders/{id}", Kind: schemas.KindServer, Host: "h1"},
		host2: metric.Labels{Domain: d, Service: "order", Operation: "POST /orders/{id}", Kind: schemas.KindServer, Host: "h2"},
		edge:  metric.Labels{Domain: d, Service: "order", Kind: schemas.KindClient, Peer: "orders-db"},
		dyed:  metric.Labels{Domain: d, Service: "order", Operation: "POST /orders/{id}", Kind: schemas.KindServer, Host: "h1", Dyed: true},
	}
	m := Midnight.Unix()
	f.minutes = []int64{m - 180, m - 120, m - 60, m, m + 60}
	f.before, f.after, f.all = Midnight.Add(-time.Hour), Midnight.Add(time.Hour), Midnight.Add(-48*time.Hour)
	return f
}

func point(id string, minute int64, spans int, rev int32) metricstore.Point {
	p := metricstore.Point{SeriesID: id, Minute: minute, Revision: rev, State: []byte(fmt.Sprintf("state-%d-%d", minute, rev))}
	for i := range spans {
		p.Stats.Add(int64(1000*(i+1)), metric.Units, i%3 == 0)
	}
	return p
}

func samePoint(t *testing.T, what string, got, want metricstore.Point) {
	t.Helper()
	if got.SeriesID != want.SeriesID || got.Minute != want.Minute || got.Revision != want.Revision ||
		!bytes.Equal(got.State, want.State) || !bytes.Equal(got.Stats.AppendBinary(nil), want.Stats.AppendBinary(nil)) {
		t.Errorf("%s: got %s@%d rev %d state %q count %d, want %s@%d rev %d state %q count %d", what,
			got.SeriesID, got.Minute, got.Revision, got.State, got.Stats.Count,
			want.SeriesID, want.Minute, want.Revision, want.State, want.Stats.Count)
	}
}

func clonePoint(p *metricstore.Point) metricstore.Point {
	c := metricstore.Point{SeriesID: p.SeriesID, Minute: p.Minute, Revision: p.Revision, State: slices.Clone(p.State)}
	if err := c.Stats.Decode(p.Stats.AppendBinary(nil)); err != nil {
		panic(err) // stats that just decoded always re-encode
	}
	return c
}

// RunMetrics checks a metric store backend.
func RunMetrics(t *testing.T, open MetricsFactory) {
	t.Run("upsert get range", func(t *testing.T) {
		s, f, ctx := open(t), newMetricFixture(), ctxFor(t)
		var ups []metricstore.Upsert
		for i, m := range f.minutes {
			ups = append(ups, metricstore.Upsert{Labels: f.op, Point: point(f.op.ID(), m, i+1, 1)})
		}
		ups = append(ups, metricstore.Upsert{Labels: f.op2, Point: point(f.op2.ID(), f.minutes[0], 9, 1)})
		if err := s.Upsert(ctx, ups); err != nil {
			t.Fatal(err)
		}
		// A second upsert of one minute replaces it: new revision, stats and state.
		newer := point(f.op.ID(), f.minutes[1], 7, 2)
		if err := s.Upsert(ctx, []metricstore.Upsert{{Labels: f.op, Point: newer}}); err != nil {
			t.Fatal(err)
		}
		ups[1].Point = newer
		keys := []metricstore.Key{{SeriesID: f.op.ID(), Minute: f.minutes[1]}, {SeriesID: f.op.ID(), Minute: f.minutes[4]},
			{SeriesID: f.op.ID(), Minute: f.minutes[4] + 3600}, {SeriesID: f.edge.ID(), Minute: f.minutes[0]},
			{SeriesID: f.op.ID(), Minute: f.minutes[0] - 10*86400}}
		got, err := s.Get(ctx, keys)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("Get returned %d points, want 2 (the others were never written)", len(got))
		}
		samePoint(t, "get replaced", got[keys[0]], newer)
		samePoint(t, "get after midnight", got[keys[1]], ups[4].Point)
		var seen []metricstore.Point
		err = s.Range(ctx, f.op.ID(), f.before, f.after, func(p *metricstore.Point) error {
			seen = append(seen, clonePoint(p)) // p is valid only during the call
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != len(f.minutes) {
			t.Fatalf("Range across midnight saw %d points, want %d", len(seen), len(f.minutes))
		}
		for i := range seen {
			samePoint(t, fmt.Sprintf("range %d", i), seen[i], ups[i].Point)
		}
		// [start, end): the end minute is out, the start minute in.
		n := 0
		if err := s.Range(ctx, f.op.ID(), time.Unix(f.minutes[1], 0), time.Unix(f.minutes[3], 0), func(*metricstore.Point) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Fatalf("Range [m1, m3) saw %d points, want 2", n)
		}
		n = 0
		if err := s.Range(ctx, f.edge.ID(), f.before, f.after, func(*metricstore.Point) error { n++; return nil }); err != nil || n != 0 {
			t.Fatalf("a series never written: %d points, %v", n, err)
		}
	})
	t.Run("series catalog", func(t *testing.T) {
		s, f, ctx := open(t), newMetricFixture(), ctxFor(t)
		before := f.minutes[0]
		var ups []metricstore.Upsert
		for _, l := range []metric.Labels{f.op, f.op2, f.host2, f.edge, f.dyed} {
			ups = append(ups, metricstore.Upsert{Labels: l, Point: point(l.ID(), before, 1, 1)})
		}
		ups = append(ups, metricstore.Upsert{Labels: f.op, Point: point(f.op.ID(), f.minutes[4], 1, 1)})
		if err := s.Upsert(ctx, ups); err != nil {
			t.Fatal(err)
		}
		ids := func(flt metricstore.Filter, start, end time.Time) []string {
			t.Helper()
			flt.Domain = f.domain
			ss, err := s.Series(ctx, flt, start, end)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, x := range ss {
				if x.Labels.ID() != x.ID {
					t.Fatalf("series %s listed with labels %+v of id %s", x.ID, x.Labels, x.Labels.ID())
				}
				out = append(out, x.ID)
			}
			slices.Sort(out)
			return out
		}
		sorted := func(ls ...metric.Labels) []string {
			var out []string
			for _, l := range ls {
				out = append(out, l.ID())
			}
			slices.Sort(out)
			return out
		}
		for name, c := range map[string]struct {
			flt        metricstore.Filter
			start, end time.Time
			want       []string
		}{
			"service":           {metricstore.Filter{Service: "order"}, f.before, f.after, sorted(f.op, f.op2, f.host2)},
			"operation":         {metricstore.Filter{Service: "order", Operation: f.op.Operation}, f.before, f.after, sorted(f.op, f.host2)},
			"host":              {metricstore.Filter{Host: "h2"}, f.before, f.after, sorted(f.host2)},
			"edges":             {metricstore.Filter{Edges: true}, f.before, f.after, sorted(f.edge)},
			"dyed":              {metricstore.Filter{Dyed: true}, f.before, f.after, sorted(f.dyed)},
			"other service":     {metricstore.Filter{Service: "payment"}, f.before, f.after, nil},
			"day after only":    {metricstore.Filter{}, Midnight, f.after, sorted(f.op)},
			"long before":       {metricstore.Filter{}, f.all, f.all.Add(time.Hour), nil},
			"day before covers": {metricstore.Filter{Service: "order"}, f.before, Midnight, sorted(f.op, f.op2, f.host2)},
		} {
			if got := ids(c.flt, c.start, c.end); !slices.Equal(got, c.want) {
				t.Errorf("%s: got %v, want %v", name, got, c.want)
			}
		}
	})
	t.Run("retention drops whole days", func(t *testing.T) {
		s, f, ctx := open(t), newMetricFixture(), ctxFor(t)
		var ups []metricstore.Upsert
		for _, m := range f.minutes {
			ups = append(ups, metricstore.Upsert{Labels: f.op, Point: point(f.op.ID(), m, 1, 1)})
		}
		if err := s.Upsert(ctx, ups); err != nil {
			t.Fatal(err)
		}
		if err := s.DropBefore(ctx, Midnight.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		var left []int64
		if err := s.Range(ctx, f.op.ID(), f.all, f.after, func(p *metricstore.Point) error { left = append(left, p.Minute); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(left, f.minutes[3:]) {
			t.Fatalf("after dropping the day before midnight: minutes %v, want %v", left, f.minutes[3:])
		}
		ss, err := s.Series(ctx, metricstore.Filter{Domain: f.domain}, f.before, Midnight)
		if err != nil || len(ss) != 0 {
			t.Fatalf("the dropped day's catalog: %v %v", ss, err)
		}
	})
	t.Run("bad points are refused", func(t *testing.T) {
		s, f, ctx := open(t), newMetricFixture(), ctxFor(t)
		for name, p := range map[string]metricstore.Point{
			"minute not on a minute": point(f.op.ID(), f.minutes[0]+1, 1, 1),
			"no series":              point("", f.minutes[0], 1, 1),
		} {
			if err := s.Upsert(ctx, []metricstore.Upsert{{Labels: f.op, Point: p}}); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
}
