package metricstore

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/internal/sketch"
	"github.com/mercury-apm/mercury/schemas"
)

func TestValueAndLabelsRoundTrip(t *testing.T) {
	p := Point{Revision: 7, State: []byte("dedup")}
	p.Stats.Add(1500, metric.Units, true)
	var got Point
	if err := DecodeValue(AppendValue(nil, &p), &got); err != nil {
		t.Fatal(err)
	}
	if got.Revision != 7 || !bytes.Equal(got.State, p.State) || got.Stats.Count != metric.Units || got.Stats.Errors != metric.Units {
		t.Fatalf("decoded %+v", got)
	}
	l := metric.Labels{Domain: "d", Service: "s/x", Operation: "GET /a", Kind: schemas.KindClient, Host: "", Peer: "db", Dyed: true}
	back, err := DecodeLabels(AppendLabels(nil, l))
	if err != nil || back != l {
		t.Fatalf("labels %+v %v", back, err)
	}
	val := AppendValue(nil, &p)
	for name, b := range map[string][]byte{"empty": nil, "version": {9}, "revision": {1, 0xff}, "stats length": {1, 1, 0x7f}, "stats": append([]byte{1, 1, 2}, 9, 9)} {
		if err := DecodeValue(b, &got); !errors.Is(err, ErrCorrupt) {
			t.Errorf("value %s: %v", name, err)
		}
	}
	if err := DecodeValue(val[:len(val)-len(p.State)-1], &got); err == nil {
		t.Error("a value cut inside its stats decoded")
	}
	lab := AppendLabels(nil, l)
	for name, b := range map[string][]byte{"short": {1}, "dyed": {1, 2}, "kind": {9, 0, 0, 0, 0, 0, 0}, "truncated": lab[:len(lab)-1], "trailing": append(lab, 0)} {
		if _, err := DecodeLabels(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("labels %s: %v", name, err)
		}
	}
}

func TestFilter(t *testing.T) {
	op := metric.Labels{Domain: "d", Service: "s", Operation: "o", Host: "h"}
	edge := metric.Labels{Domain: "d", Service: "s", Peer: "db"}
	for _, c := range []struct {
		f    Filter
		l    metric.Labels
		want bool
	}{
		{Filter{}, op, true}, {Filter{}, edge, false}, {Filter{Edges: true}, edge, true},
		{Filter{Service: "s", Operation: "o", Host: "h", Domain: "d"}, op, true}, {Filter{Host: "x"}, op, false},
		{Filter{Dyed: true}, op, false},
	} {
		if got := c.f.Match(c.l); got != c.want {
			t.Errorf("%+v matches %+v: %v", c.f, c.l, got)
		}
	}
}

// A point survives the trip through mercury.metrics.1m: its record carries the same exact
// stats (units, 128-bit sum, sketch) and the float fields readers use.
func TestRecordRoundTrip(t *testing.T) {
	p := Point{SeriesID: "s1", Minute: 120, Revision: 3}
	for i := int64(1); i <= 500; i++ {
		p.Stats.Add(i*i*1000, metric.Weight(0.5), i%9 == 0)
	}
	l := metric.Labels{Domain: "d", Service: "svc", Operation: "op", Kind: schemas.KindServer, Host: "h"}
	msg, err := schemas.Marshal(Record(l, &p))
	if err != nil {
		t.Fatal(err)
	}
	var rec schemas.MetricPoint
	if err := schemas.Unmarshal(msg, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Service != "svc" || rec.Revision != 3 || rec.Count != 1000 || rec.MinuteUnix != 120 || rec.Errors != 2*55 {
		t.Fatalf("record %+v", rec)
	}
	sum, err := metric.Uint128From(rec.SumUnits)
	if err != nil {
		t.Fatal(err)
	}
	back := metric.Stats{Count: rec.CountUnits, Errors: rec.ErrorUnits, Sum: sum, Min: rec.MinNano, Max: rec.MaxNano}
	if err := back.Sketch.Decode(rec.Sketch); err != nil || rec.SketchSchema != sketch.Schema {
		t.Fatalf("sketch: %v, schema %d", err, rec.SketchSchema)
	}
	if !bytes.Equal(back.AppendBinary(nil), p.Stats.AppendBinary(nil)) {
		t.Fatal("the record's stats differ from the point's")
	}
}
