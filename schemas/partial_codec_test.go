package schemas_test

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/mercury-apm/mercury/schemas"
)

func partialCodecRef() (c interface {
	BinaryFromNative([]byte, any) ([]byte, error)
	NativeFromBinary([]byte) (any, []byte, error)
}) {
	return schemas.Current(schemas.NameMetricPartial).Codec
}

func randomPartial(r *rand.Rand) schemas.MetricPartial {
	str := func() string {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	bs := func() []byte {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	}
	long := func() int64 { return int64(r.Uint64()) >> r.IntN(64) }
	i32 := func() int32 { return int32(r.Uint32()) >> r.IntN(32) }
	return schemas.MetricPartial{SeriesID: str(), Domain: str(), Service: str(), Operation: str(), Kind: schemas.SpanKind(r.IntN(5)),
		Peer: str(), Host: str(), Dyed: r.IntN(2) == 1, WindowStartUnixMilli: long(), WindowMillis: i32(), CountUnits: long(),
		ErrorUnits: long(), SumUnits: bs(), MinNano: long(), MaxNano: long(), Sketch: bs(), SketchSchema: i32(),
		SourcePartition: i32(), FirstOffset: long(), LastOffset: long()}
}

func TestPartialCodecMatchesGoavro(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	cases := []schemas.MetricPartial{{SumUnits: []byte{}, Sketch: []byte{}},
		{WindowStartUnixMilli: math.MinInt64, LastOffset: math.MaxInt64, WindowMillis: math.MinInt32, SumUnits: []byte{}, Sketch: []byte{}}}
	for range 2000 {
		cases = append(cases, randomPartial(r))
	}
	for _, p := range cases {
		fast := schemas.AppendMetricPartial(nil, &p)
		ref, err := partialCodecRef().BinaryFromNative(nil, schemas.ToNative(&p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, ref) {
			t.Fatalf("bytes differ for %+v\nfast   %x\ngoavro %x", p, fast, ref)
		}
		var got schemas.MetricPartial
		if rest, err := schemas.DecodeMetricPartial(ref, &got); err != nil || len(rest) != 0 || !reflect.DeepEqual(got, p) {
			t.Fatalf("decode of goavro bytes: %v\n got %+v\nwant %+v", err, got, p)
		}
	}
}

func FuzzPartialCodec(f *testing.F) {
	r := rand.New(rand.NewPCG(13, 14))
	p := randomPartial(r)
	f.Add(schemas.AppendMetricPartial(nil, &p))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p schemas.MetricPartial
		rest, err := schemas.DecodeMetricPartial(b, &p)
		_, grest, gerr := partialCodecRef().NativeFromBinary(b)
		if err == nil && gerr != nil {
			t.Fatalf("fast accepted, goavro rejected: %v", gerr)
		}
		if err != nil || gerr != nil {
			return
		}
		if len(rest) != len(grest) {
			t.Fatalf("consumed differently: %d vs %d", len(rest), len(grest))
		}
		// Overlong varints re-encode shorter; the record itself must survive.
		var back schemas.MetricPartial
		if _, err := schemas.DecodeMetricPartial(schemas.AppendMetricPartial(nil, &p), &back); err != nil || !reflect.DeepEqual(back, p) {
			t.Fatalf("re-encoding changed the record: %v", err)
		}
	})
}
