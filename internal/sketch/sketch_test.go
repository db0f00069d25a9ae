package sketch

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The layout is Prometheus's: a native histogram of schema 6 puts every value in the bucket
// this package does.
func TestBucketsMatchPrometheusNativeHistogram(t *testing.T) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "x", NativeHistogramBucketFactor: Growth, NativeHistogramMaxBucketNumber: 0,
	})
	var s Sketch
	rng := rand.New(rand.NewPCG(1, 2))
	vals := []float64{1, 2, 0.5, 1e-9, 3, 1e6, 123456789, Growth, math.Nextafter(Growth, 2)}
	for range 5000 {
		vals = append(vals, math.Exp(rng.Float64()*40-10))
	}
	for _, v := range vals {
		h.Observe(v)
		s.Add(v, 1)
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	ph := m.GetHistogram()
	if ph.GetSchema() != Schema {
		t.Fatalf("prometheus picked schema %d for factor %v, want %d", ph.GetSchema(), Growth, Schema)
	}
	want := map[int32]int64{}
	idx, k := int32(0), 0
	for _, sp := range ph.GetPositiveSpan() {
		idx += sp.GetOffset()
		for range sp.GetLength() {
			// Prometheus's bucket key i covers (γ^(i-1), γ^i]; spans are in those keys.
			want[idx] = 0
			idx++
			k++
		}
	}
	cum := int64(0)
	keys := make([]int32, 0, len(want))
	for i := range want {
		keys = append(keys, i)
	}
	slices.Sort(keys)
	for j, i := range keys {
		cum += ph.GetPositiveDelta()[j]
		want[i] = cum
	}
	got := map[int32]int64{}
	s.Buckets(func(i int32, c int64) { got[i] = c })
	for i, c := range want {
		if c != 0 && got[i] != c {
			t.Errorf("bucket %d: prometheus %d, sketch %d", i, c, got[i])
		}
	}
	for i, c := range got {
		if want[i] != c {
			t.Errorf("bucket %d: sketch %d, prometheus %d", i, c, want[i])
		}
	}
}

func TestIndexBounds(t *testing.T) {
	for _, v := range []float64{1e-12, 0.001, 1, 1.5, 2, 1000, 1e9, 3.7e11} {
		i := Index(v)
		if lo, hi := UpperBound(i-1), UpperBound(i); !(lo < v && v <= hi*(1+1e-15)) {
			t.Errorf("Index(%v) = %d covering (%v, %v]", v, i, lo, hi)
		}
	}
}

// exactQuantile is the nearest-rank quantile of weighted values, the sketch's definition.
func exactQuantile(vals []float64, weights []int64, q float64) float64 {
	idx := make([]int, len(vals))
	var total int64
	for i := range idx {
		idx[i] = i
		total += weights[i]
	}
	slices.SortFunc(idx, func(a, b int) int { return cmpFloat(vals[a], vals[b]) })
	rank, cum := Rank(q, total), int64(0)
	for _, i := range idx {
		cum += weights[i]
		if cum >= rank {
			return vals[i]
		}
	}
	return math.NaN()
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestQuantileWithinRelativeError(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	dists := map[string]func() float64{
		"lognormal": func() float64 { return math.Exp(rng.NormFloat64()*2 + 13) },
		"uniform":   func() float64 { return 1 + rng.Float64()*1e6 },
		"bimodal": func() float64 {
			if rng.IntN(10) == 0 {
				return 5e8 + rng.Float64()*1e8
			}
			return 2e5 + rng.Float64()*1e4
		},
		"constant": func() float64 { return 4242 },
	}
	for name, gen := range dists {
		var s Sketch
		var vals []float64
		var ws []int64
		for range 20000 {
			v, w := gen(), int64(1+rng.IntN(3))
			vals, ws = append(vals, v), append(ws, w)
			s.Add(v, w)
		}
		for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.99, 0.999, 1} {
			want, got := exactQuantile(vals, ws, q), s.Quantile(q)
			if rel := math.Abs(got-want) / want; rel > RelativeError*(1+1e-9) {
				t.Errorf("%s q=%v: got %v want %v, relative error %.4f%% > %.4f%%", name, q, got, want, rel*100, RelativeError*100)
			}
		}
	}
	if RelativeError > 0.01 {
		t.Fatalf("relative error bound %v above 1%%", RelativeError)
	}
}

func TestMergeIsExactAndOrderFree(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	parts := make([]Sketch, 8)
	var all Sketch
	for i := range 10000 {
		v := math.Exp(rng.Float64()*30) - 1
		if i%100 == 0 {
			v = 0
		}
		w := int64(1 + rng.IntN(1000))
		parts[rng.IntN(len(parts))].Add(v, w)
		all.Add(v, w)
	}
	var fwd, back Sketch
	for i := range parts {
		fwd.Merge(&parts[i])
		back.Merge(&parts[len(parts)-1-i])
	}
	a, b, c := all.AppendBinary(nil), fwd.AppendBinary(nil), back.AppendBinary(nil)
	if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Fatal("merged sketches differ from the sketch of all values")
	}
	if fwd.Total() != all.Total() || fwd.Zero() != all.Zero() {
		t.Fatalf("totals %d/%d zero %d/%d", fwd.Total(), all.Total(), fwd.Zero(), all.Zero())
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	var s Sketch
	if got := s.Quantile(0.5); !math.IsNaN(got) {
		t.Fatalf("empty sketch quantile %v, want NaN", got)
	}
	for _, v := range []float64{0, 1, 1e3, 1e3, 1e9, 0.25} {
		s.Add(v, 7)
	}
	enc := s.AppendBinary([]byte("prefix"))[len("prefix"):]
	var d Sketch
	if err := d.Decode(enc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.AppendBinary(nil), enc) || d.Total() != s.Total() {
		t.Fatal("round trip changed the sketch")
	}
	var empty Sketch
	if err := d.Decode(empty.AppendBinary(nil)); err != nil || d.Total() != 0 {
		t.Fatalf("empty round trip: %v total %d", err, d.Total())
	}
}

func TestDecodeRejectsCorruptBytes(t *testing.T) {
	var s Sketch
	s.Add(10, 1)
	s.Add(1e6, 2)
	good := s.AppendBinary(nil)
	cases := map[string][]byte{
		"empty":         {},
		"version":       {9, 0, 0},
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
		"zero count":    {1, 0, 1, 2, 1, 0},
		"huge n":        {1, 0, 0xff, 0xff, 0xff, 0x0f, 2, 1, 1},
		"huge index":    {1, 0, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f, 1, 1},
		"huge width":    {1, 0, 1, 2, 0xff, 0xff, 0xff, 0x0f, 1},
		"short width":   {1, 0, 2, 2, 1, 1, 1, 1},
		"width not met": {1, 0, 1, 2, 3, 1},
		"zero delta":    {1, 0, 2, 2, 2, 1, 0, 1},
		"huge delta":    {1, 0, 2, 2, 2, 1, 0xff, 0xff, 0x3f, 1},
		"negative zero": {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0},
	}
	for name, b := range cases {
		if err := s.Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	var s Sketch
	s.Add(3, 1)
	s.Add(3e9, 5)
	f.Add(s.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Sketch
		if d.Decode(b) != nil {
			return
		}
		var again Sketch
		if err := again.Decode(d.AppendBinary(nil)); err != nil || again.Total() != d.Total() {
			t.Fatalf("re-encoding a decoded sketch: %v", err)
		}
	})
}
