package phase2

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/sketch"
	"github.com/mercury-apm/mercury/schemas"
)

func stats(d int64) *metric.Stats {
	var s metric.Stats
	s.Add(d, metric.Units, false)
	return &s
}

// The stream a point sees from one source partition: a range cut short by a phase-1 crash,
// the same range replayed in full, the next range, and phase 2 re-reading all of it.
func TestMergeDropsEveryCopy(t *testing.T) {
	var p Point
	type in struct {
		part   int32
		first  int64
		window uint8
		want   bool
	}
	for i, c := range []in{
		{0, 100, 0, true},  // range 100.. window 0
		{0, 100, 0, false}, // replay of range 100..
		{0, 100, 1, true},  // the window the crash cut off
		{1, 7, 0, true},    // another source partition
		{0, 250, 0, true},  // next range of partition 0
		{0, 100, 2, false}, // an older range after a newer one: a copy
		{1, 7, 0, false},
		{0, 250, 2, true},
	} {
		if got := p.Merge(Stream{Partition: c.part}, c.first, c.window, stats(int64(10+i))); got != c.want {
			t.Fatalf("step %d %+v: merged %v", i, c, got)
		}
	}
	if p.Stats.Count != 5*metric.Units {
		t.Fatalf("count %d, want 5 spans", p.Stats.Count)
	}
	// The state survives the store, and a restored point still drops copies.
	var q Point
	if err := q.DecodeState(p.AppendState(nil)); err != nil {
		t.Fatal(err)
	}
	if q.Merge(Stream{Partition: 0}, 250, 2, stats(1)) || q.Merge(Stream{Partition: 1}, 7, 0, stats(1)) || !q.Merge(Stream{Partition: 1}, 9, 0, stats(1)) {
		t.Fatal("restored state does not dedup like the original")
	}
	if !bytes.Equal(q.AppendState(nil)[:1], []byte{2}) {
		t.Fatal("two source partitions expected")
	}
	for _, bad := range [][]byte{{}, {1}, {1, 0, 0, 1}, {2, 1, 0, 1, 1, 0, 0, 1, 1}, {0, 0}} {
		if err := q.DecodeState(bad); !errors.Is(err, ErrCorruptState) {
			t.Errorf("state %x: %v", bad, err)
		}
	}
}

// An __other__ point merges many series from one source partition, each its own stream: the
// same range and window of two series are two partials, not a copy.
func TestOverflowPointsKeepOneStreamPerSeries(t *testing.T) {
	var p Point
	a, b := Stream{Partition: 3, Origin: OriginOf("series-a")}, Stream{Partition: 3, Origin: OriginOf("series-b")}
	if a.Origin == 0 || a.Origin == b.Origin {
		t.Fatal("origins must be non-zero and differ")
	}
	if !p.Merge(a, 100, 0, stats(1)) || !p.Merge(b, 100, 0, stats(2)) || p.Merge(a, 100, 0, stats(1)) || p.Merge(b, 100, 0, stats(2)) {
		t.Fatal("two series' partials of one range: both merge once")
	}
	var q Point
	if err := q.DecodeState(p.AppendState(nil)); err != nil || q.Merge(b, 100, 0, stats(2)) || !q.Merge(b, 100, 1, stats(2)) {
		t.Fatalf("restored overflow state: %v", err)
	}
}

func TestDecodeChecksPartials(t *testing.T) {
	var sk sketch.Sketch
	sk.Add(5, metric.Units)
	good := schemas.MetricPartial{SeriesID: "s", WindowStartUnixMilli: 120_000 + 40_000, WindowMillis: 20000,
		CountUnits: metric.Units, SumUnits: metric.Mul64(5, metric.Units).Bytes(), MinNano: 5, MaxNano: 5,
		Sketch: sk.AppendBinary(nil), SketchSchema: sketch.Schema, FirstOffset: 1, LastOffset: 2}
	var st metric.Stats
	w, err := Decode(&good, &st)
	if err != nil || w != 2 || Minute(&good) != 120 || st.Count != metric.Units {
		t.Fatalf("window %d minute %d err %v", w, Minute(&good), err)
	}
	for name, mut := range map[string]func(*schemas.MetricPartial){
		"window 7 s":     func(p *schemas.MetricPartial) { p.WindowMillis = 7000 },
		"schema":         func(p *schemas.MetricPartial) { p.SketchSchema = 3 },
		"no series":      func(p *schemas.MetricPartial) { p.SeriesID = "" },
		"range":          func(p *schemas.MetricPartial) { p.LastOffset = 0 },
		"sum":            func(p *schemas.MetricPartial) { p.SumUnits = []byte{1} },
		"sketch":         func(p *schemas.MetricPartial) { p.Sketch = []byte{9} },
		"count≠sketch":   func(p *schemas.MetricPartial) { p.CountUnits = 2 * metric.Units },
		"errors>count":   func(p *schemas.MetricPartial) { p.ErrorUnits = 2 * metric.Units },
		"min>max":        func(p *schemas.MetricPartial) { p.MinNano = 6 },
		"negative start": func(p *schemas.MetricPartial) { p.SourcePartition = -1 },
	} {
		p := good
		mut(&p)
		if _, err := Decode(&p, &st); !errors.Is(err, ErrBadPartial) {
			t.Errorf("%s: %v, want ErrBadPartial", name, err)
		}
	}
	neg := good
	neg.WindowStartUnixMilli = -20000
	if Minute(&neg) != -60 {
		t.Fatalf("minute of a pre-1970 window %d", Minute(&neg))
	}
}
