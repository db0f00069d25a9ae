package metric

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/mercury-apm/mercury/schemas"
)

func TestWeight(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want int64
	}{{1, 1024}, {0.5, 2048}, {0.1, 10240}, {0.3, 3413}, {0, 1024}, {-1, 1024}, {2, 1024}, {math.NaN(), 1024}, {1e-9, 1024e6}} {
		if got := Weight(c.rate); got != c.want {
			t.Errorf("Weight(%v) = %d, want %d", c.rate, got, c.want)
		}
	}
}

// Series ids key Kafka messages and store rows: they must never change between versions.
func TestSeriesIDIsStable(t *testing.T) {
	l := Labels{Domain: "shop", Service: "order", Operation: "POST /orders/{id}", Kind: schemas.KindServer, Host: "h1"}
	if got := l.ID(); got != "3c9b4e16f452bfde" {
		t.Fatalf("id %q", got)
	}
	seen := map[string]Labels{}
	for _, v := range []Labels{l,
		{Domain: "shop", Service: "order", Operation: "POST /orders/{id}", Kind: schemas.KindClient, Host: "h1"},
		{Domain: "shop", Service: "order", Operation: "POST /orders/{id}", Kind: schemas.KindServer, Host: "h1", Dyed: true},
		{Domain: "shop", Service: "orde", Operation: "rPOST /orders/{id}", Kind: schemas.KindServer, Host: "h1"},
		{Domain: "shop", Service: "order", Kind: schemas.KindClient, Peer: "payment"},
	} {
		id := v.ID()
		if o, dup := seen[id]; dup {
			t.Fatalf("%+v and %+v share id %s", o, v, id)
		}
		seen[id] = v
	}
	if l.OverflowID(0) == l.ID() || l.OverflowID(0) == l.OverflowID(1) {
		t.Fatal("overflow ids must differ per partition and from the plain id")
	}
}

func TestStatsMergeAndEncoding(t *testing.T) {
	var a, b, all Stats
	for i := int64(0); i < 1000; i++ {
		d, w, e := i*i*1000, Weight(1/float64(1+i%4)), i%7 == 0
		all.Add(d, w, e)
		if i%2 == 0 {
			a.Add(d, w, e)
		} else {
			b.Add(d, w, e)
		}
	}
	a.Merge(&b)
	if !bytes.Equal(a.AppendBinary(nil), all.AppendBinary(nil)) {
		t.Fatal("merge differs from the stats of all spans")
	}
	if a.Min != 0 || a.Max != 999*999*1000 || a.Errors == 0 {
		t.Fatalf("min %d max %d errors %d", a.Min, a.Max, a.Errors)
	}
	var d Stats
	if err := d.Decode(all.AppendBinary(nil)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.AppendBinary(nil), all.AppendBinary(nil)) {
		t.Fatal("round trip changed the stats")
	}
	if q := d.Quantile(1); q != float64(d.Max) {
		t.Fatalf("p100 %v, want the exact max %d", q, d.Max)
	}
	enc := all.AppendBinary(nil)
	for _, bad := range [][]byte{nil, {9}, enc[:5], enc[:len(enc)-1]} {
		if err := d.Decode(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode %x: %v, want ErrCorrupt", bad, err)
		}
	}
}

func TestSum128DoesNotOverflow(t *testing.T) {
	var s Stats
	for range 1000 {
		s.Add(1e12, Weight(1e-6), false) // 1000 s spans at rate 1e-6: 1e12 × 1.024e9 each
	}
	if got, want := s.Sum.Float(), 1e12*1.024e9*1000; math.Abs(got-want)/want > 1e-12 {
		t.Fatalf("sum %v, want %v", got, want)
	}
	u, err := Uint128From(s.Sum.Bytes())
	if err != nil || u != s.Sum {
		t.Fatalf("round trip %v %v", u, err)
	}
	if _, err := Uint128From([]byte{1, 2}); err == nil {
		t.Fatal("a 2-byte sum was accepted")
	}
}

func TestOverflowLabels(t *testing.T) {
	op := Labels{Domain: "d", Service: "s", Operation: "GET /x", Host: "h"}
	edge := Labels{Domain: "d", Service: "s", Peer: "db", Kind: schemas.KindClient}
	if o := op.Overflow(); o.Operation != Other || o.Host != Other || o.Service != "s" || !o.IsOverflow() || op.IsOverflow() {
		t.Fatalf("operation overflow %+v", o)
	}
	if o := edge.Overflow(); o.Peer != Other || !o.IsEdge() || !o.IsOverflow() || edge.IsOverflow() {
		t.Fatalf("edge overflow %+v", o)
	}
}
