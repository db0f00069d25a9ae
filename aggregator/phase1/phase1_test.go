package phase1

import (
	"reflect"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/schemas"
)

const sec = int64(time.Second)

// wall is the clock the spans are read at: after all of them.
const wall = 1_800_000_000 * sec

func span(svc, op string, startSec int64, kind schemas.SpanKind, peer string) schemas.Span {
	return schemas.Span{Domain: "shop", Service: svc, Operation: op, Kind: kind, Peer: peer, Host: "h1",
		StartUnixNano: 1_700_000_000*sec + startSec*sec, DurationNano: 1000 + startSec, SampleRate: 1}
}

func TestWindowsEdgesAndDeterminism(t *testing.T) {
	spans := []schemas.Span{
		span("api", "GET /", 0, schemas.KindServer, ""),
		span("api", "GET /", 19, schemas.KindServer, ""),
		span("api", "GET /", 21, schemas.KindServer, ""),
		span("api", "HTTP GET", 5, schemas.KindClient, "order"),
		span("api", "SELECT", 6, schemas.KindClient, "orders-db"),
	}
	spans[1].Status = schemas.StatusError
	spans[2].SampleRate = 0.25
	fold := func() []schemas.MetricPartial {
		r := New(Config{}, 3, 0)
		for i := range spans {
			if out := r.Add(int64(100+i), &spans[i], wall); out != Counted {
				t.Fatalf("span %d: outcome %d", i, out)
			}
		}
		return r.Partials(nil)
	}
	got := fold()
	// api GET / in two windows, two client operation series, two edges.
	if len(got) != 6 {
		t.Fatalf("%d partials: %+v", len(got), got)
	}
	byKey := map[string]schemas.MetricPartial{}
	for _, p := range got {
		if p.SourcePartition != 3 || p.FirstOffset != 100 || p.LastOffset != 104 || p.WindowMillis != 20000 {
			t.Fatalf("range tags %+v", p)
		}
		byKey[p.Operation+"|"+p.Peer+"|"+time.UnixMilli(p.WindowStartUnixMilli).UTC().Format("15:04:05")] = p
	}
	first := byKey["GET /||22:13:20"]
	if first.CountUnits != 2*metric.Units || first.ErrorUnits != metric.Units || first.MinNano != 1000 || first.MaxNano != 1019 {
		t.Fatalf("first window %+v", first)
	}
	if second := byKey["GET /||22:13:40"]; second.CountUnits != 4*metric.Units {
		t.Fatalf("sampled span weighs %d units, want 4 spans", second.CountUnits)
	}
	for _, k := range []string{"|order|22:13:20", "|orders-db|22:13:20", "HTTP GET||22:13:20"} {
		if _, ok := byKey[k]; !ok {
			t.Errorf("missing %s in %v", k, reflect.ValueOf(byKey).MapKeys())
		}
	}
	if !reflect.DeepEqual(got, fold()) {
		t.Fatal("folding the same records twice gave different partials")
	}
}

func TestLatenessFollowsThePartitionWatermark(t *testing.T) {
	r := New(Config{Lateness: 30 * time.Minute}, 0, 0)
	now := span("a", "op", 3600, schemas.KindServer, "")
	late := span("a", "op", 3600-25*60, schemas.KindServer, "")
	tooLate := span("a", "op", 3600-31*60, schemas.KindServer, "")
	if r.Add(1, &late, wall) != Counted || r.Add(2, &now, wall) != Counted || r.Add(3, &late, wall) != Counted || r.Add(4, &tooLate, wall) != TooLate {
		t.Fatal("25-minute-late spans must count, 31-minute-late ones must not")
	}
	wm := r.Watermark()
	r.Next()
	if first, _, ok := r.Bounds(); ok || r.StartWatermark() != wm || first != -1 {
		t.Fatal("Next must start an empty range at the old watermark")
	}
	// A new range of the same partition resumes at the watermark it is given.
	r2 := New(Config{}, 0, wm)
	if r2.Add(5, &tooLate, wall) != TooLate {
		t.Fatal("the watermark did not carry over")
	}
	if _, last, ok := r2.Bounds(); !ok || last != 5 {
		t.Fatal("a too-late span still belongs to the range")
	}
}

// A span from a host whose clock runs a day ahead is dropped and moves no watermark: the
// partition's correct spans stay on time.
func TestFutureSpansDoNotMoveTheWatermark(t *testing.T) {
	r := New(Config{}, 0, 0)
	ok := span("a", "op", 0, schemas.KindServer, "")
	clock := ok.StartUnixNano + 10*sec
	future := span("a", "op", 86400, schemas.KindServer, "")
	if r.Add(1, &ok, clock) != Counted || r.Add(2, &future, clock) != Future || r.Add(3, &ok, clock) != Counted {
		t.Fatal("want counted, future, counted")
	}
	if r.Watermark() != ok.StartUnixNano || r.Open() != 1 {
		t.Fatalf("watermark %d, %d aggregates", r.Watermark(), r.Open())
	}
	if _, last, _ := r.Bounds(); last != 3 {
		t.Fatal("a future span still belongs to the range")
	}
}

func TestSeriesCapFoldsIntoOther(t *testing.T) {
	r := New(Config{MaxSeriesPerService: 2}, 0, 0)
	outs := []Outcome{}
	for i, op := range []string{"a", "b", "c", "a", "d"} {
		s := span("svc", op, 0, schemas.KindServer, "")
		outs = append(outs, r.Add(int64(i), &s, wall))
	}
	if !reflect.DeepEqual(outs, []Outcome{Counted, Counted, Overflow, Counted, Overflow}) {
		t.Fatalf("outcomes %v", outs)
	}
	var other int64
	for _, p := range r.Partials(nil) {
		if p.Operation == metric.Other {
			other += p.CountUnits
			if p.Host != metric.Other {
				t.Fatal("overflow keeps the host")
			}
		}
	}
	if other != 2*metric.Units {
		t.Fatalf("__other__ holds %d units, want 2 spans", other)
	}
	if r.Open() != 3 {
		t.Fatalf("%d open aggregates, want 3", r.Open())
	}
}
