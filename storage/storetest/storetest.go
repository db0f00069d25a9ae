package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/schemas/schemastest"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// Factories return a ready backend; they register their own cleanup with t.Cleanup. A
// factory may return a backend over shared data (a real server): the suite only looks at
// data it wrote itself.
type (
	IndexFactory func(t *testing.T) tracestore.Index
	RowsFactory  func(t *testing.T) tracestore.Rows
	StoreFactory func(t *testing.T) *tracestore.Store
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Queries returns the conformance queries over fixture f, each named.
func Queries(f *Fixture) map[string]tracestore.Query {
	k := f.Key
	return map[string]tracestore.Query{
		"bk":                      {BusinessKeys: []schemas.KV{k("order", "A")}},
		"bk dyed include":         {BusinessKeys: []schemas.KV{k("order", "A")}, Dyed: tracestore.DyedInclude},
		"bk dyed only":            {BusinessKeys: []schemas.KV{k("order", "A")}, Dyed: tracestore.DyedOnly},
		"bk and bk same span":     {BusinessKeys: []schemas.KV{k("order", "A"), k("user", "U1")}},
		"bk and bk other":         {BusinessKeys: []schemas.KV{k("order", "A"), k("user", "U2")}},
		"bk and missing bk":       {BusinessKeys: []schemas.KV{k("order", "A"), k("user", "nobody")}},
		"bk and service":          {BusinessKeys: []schemas.KV{k("order", "B")}, Service: f.Order},
		"bk and other service":    {BusinessKeys: []schemas.KV{k("order", "B")}, Service: f.DB},
		"bk and operation":        {BusinessKeys: []schemas.KV{k("order", "A")}, Service: f.Gateway, Operation: "POST /pay"},
		"bk errors":               {BusinessKeys: []schemas.KV{k("order", "B")}, ErrorsOnly: true},
		"bk errors none":          {BusinessKeys: []schemas.KV{k("order", "A")}, ErrorsOnly: true},
		"bk min duration":         {BusinessKeys: []schemas.KV{k("order", "A")}, MinDuration: 50 * time.Millisecond},
		"bk max duration":         {BusinessKeys: []schemas.KV{k("order", "A")}, MaxDuration: 50 * time.Millisecond},
		"bk cross day":            {BusinessKeys: []schemas.KV{k("order", "C")}},
		"bk after midnight":       {BusinessKeys: []schemas.KV{k("order", "C")}, Start: Midnight},
		"bk before midnight":      {BusinessKeys: []schemas.KV{k("order", "C")}, End: Midnight.Add(-time.Nanosecond)},
		"service":                 {Service: f.Gateway},
		"service limit":           {Service: f.Gateway, Limit: 2},
		"service dyed include":    {Service: f.Order, Dyed: tracestore.DyedInclude},
		"service operation":       {Service: f.Gateway, Operation: "GET /order/{id}"},
		"service errors":          {Service: f.Order, ErrorsOnly: true},
		"service errors dyed":     {Service: f.Order, ErrorsOnly: true, Dyed: tracestore.DyedOnly},
		"service min max":         {Service: f.Gateway, MinDuration: 100 * time.Millisecond, MaxDuration: time.Second},
		"service window":          {Service: f.Gateway, Start: Midnight.Add(-9 * time.Second), End: Midnight.Add(-6 * time.Second)},
		"service exact start":     {Service: f.Gateway, Start: Midnight.Add(-9 * time.Second), End: Midnight.Add(-9 * time.Second)},
		"service empty window":    {Service: f.Gateway, Start: Midnight.Add(time.Hour)},
		"unknown service":         {Service: "nobody-" + f.Tag},
		"wildcard service":        {Service: "*:*"},
		"wildcard value":          {BusinessKeys: []schemas.KV{{Key: "order", Value: "*"}}},
		"injection literal":       {BusinessKeys: []schemas.KV{{Key: "inject", Value: `") OR 1=1`}}},
		"injection stored":        {BusinessKeys: []schemas.KV{k("inject", `") OR 1=1`)}},
		"separators stored":       {BusinessKeys: []schemas.KV{k("weird", "a/b=c")}},
		"separator prefix forged": {BusinessKeys: []schemas.KV{k("weird", "a")}},
		"dotted key":              {BusinessKeys: []schemas.KV{k("k.with.dots", "*:*")}},
		"unicode key":             {BusinessKeys: []schemas.KV{k("订单号", "单")}},
		"value prefix":            {BusinessKeys: []schemas.KV{{Key: "order", Value: "A"}}},
		"error type":              {ErrorType: f.ErrorType},
		"error type dyed include": {ErrorType: f.ErrorType, Dyed: tracestore.DyedInclude},
		"error type and service":  {ErrorType: f.ErrorType, Service: f.Order},
		"error type other svc":    {ErrorType: f.ErrorType, Service: f.DB},
		"error type min duration": {ErrorType: f.ErrorType, MinDuration: 2 * time.Second},
		"unknown error type":      {ErrorType: "*nobody.Error-" + f.Tag},
		"event":                   {Event: f.Retry},
		"event and bk":            {Event: f.CacheMiss, BusinessKeys: []schemas.KV{k("order", "A")}},
		"event and other bk":      {Event: f.CacheMiss, BusinessKeys: []schemas.KV{k("order", "B")}},
		"event and error type":    {Event: f.Retry, ErrorType: f.ErrorType},
	}
}

// nonEmpty are queries the oracle must answer with hits, so the suite cannot pass vacuously.
var nonEmpty = []string{"bk", "bk dyed only", "bk and bk same span", "bk and service", "bk cross day",
	"service", "service errors", "service window", "service exact start", "injection stored", "separators stored",
	"separator prefix forged", "dotted key", "unicode key", "bk and operation", "bk min duration",
	"error type", "error type dyed include", "error type and service", "event", "event and bk", "event and error type"}

// RunIndex checks an Index against the oracle.
func RunIndex(t *testing.T, newIndex IndexFactory) {
	t.Run("Search", func(t *testing.T) {
		idx := newIndex(t)
		ctx := ctxFor(t)
		f := NewFixture()
		// Twice, and in two batches: indexing must be idempotent.
		for _, batch := range [][]schemas.Span{f.Spans, f.Spans[:3], f.Spans[3:]} {
			if err := idx.IndexSpans(ctx, batch); err != nil {
				t.Fatalf("IndexSpans: %v", err)
			}
		}
		for name, q := range Queries(f) {
			t.Run(name, func(t *testing.T) {
				want := Oracle(f.Spans, q)
				if len(want) == 0 && slices.Contains(nonEmpty, name) {
					t.Fatalf("oracle found nothing for %q: fixture broken", name)
				}
				refs, err := idx.Search(ctx, q)
				if err != nil {
					t.Fatalf("Search: %v", err)
				}
				got := make([]tracestore.TraceID, len(refs))
				for i, r := range refs {
					got[i] = r.TraceID
					if r.Dyed != (r.TraceID == f.Dyed) {
						t.Errorf("ref %s: dyed %v", r.TraceID, r.Dyed)
					}
					if r.Time.IsZero() {
						t.Errorf("ref %s: zero time", r.TraceID)
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("got %s\nwant %s", names(f, got), names(f, want))
				}
			})
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		idx := newIndex(t)
		for _, q := range InvalidQueries() {
			if _, err := idx.Search(ctxFor(t), q); !errors.Is(err, tracestore.ErrInvalidQuery) {
				t.Errorf("Search(%+v) = %v, want ErrInvalidQuery", q, err)
			}
		}
	})
	t.Run("Names", func(t *testing.T) { runNames(t, newIndex(t)) })
	t.Run("CountSpans", func(t *testing.T) { runCount(t, newIndex(t)) })
	t.Run("Empty", func(t *testing.T) {
		idx := newIndex(t)
		if err := idx.IndexSpans(ctxFor(t), nil); err != nil {
			t.Fatalf("IndexSpans(nil): %v", err)
		}
	})
}

// runNames checks Services and Operations: production names only, separators and all, and
// nothing for an unknown service. The fixture's services carry the run's tag, so a shared
// server's other services do not matter.
func runNames(t *testing.T, idx tracestore.Index) {
	ctx := ctxFor(t)
	f := NewFixture()
	odd := "odd/svc=\x00" + f.Tag
	shadow := "shadow-" + f.Tag
	var extra tracestore.TraceID
	extra[0] = 0x5e
	copy(extra[1:], f.Tag)
	at := Midnight.UnixNano()
	spans := append(slices.Clone(f.Spans),
		schemas.Span{TraceID: extra, SpanID: schemas.SpanID{1}, Service: odd, Operation: "a/b=c", StartUnixNano: at, SampleRate: 1},
		// Dyed only: neither the service nor the operation may be listed.
		schemas.Span{TraceID: extra, SpanID: schemas.SpanID{2}, Service: shadow, Operation: "x", StartUnixNano: at, SampleRate: 1, Dyed: true},
		schemas.Span{TraceID: extra, SpanID: schemas.SpanID{3}, Service: f.Order, Operation: "dyed-only", StartUnixNano: at, SampleRate: 1, Dyed: true})
	if err := idx.IndexSpans(ctx, spans); err != nil {
		t.Fatalf("IndexSpans: %v", err)
	}
	services, err := idx.Services(ctx)
	if err != nil {
		t.Fatalf("Services: %v", err)
	}
	if !slices.IsSorted(services) || len(slices.Compact(slices.Clone(services))) != len(services) {
		t.Errorf("Services not sorted and unique: %q", services)
	}
	var ours []string
	for _, s := range services {
		if strings.HasSuffix(s, f.Tag) {
			ours = append(ours, s)
		}
	}
	if want := sorted(f.Gateway, f.Order, f.DB, odd); !slices.Equal(ours, want) {
		t.Errorf("Services: got %q, want %q", ours, want)
	}
	for svc, want := range map[string][]string{
		f.Gateway:         sorted("GET /order/{id}", "POST /pay", "hostile"),
		f.Order:           {"load"},
		odd:               {"a/b=c"},
		shadow:            nil,
		"nobody-" + f.Tag: nil,
	} {
		got, err := idx.Operations(ctx, svc)
		if err != nil {
			t.Fatalf("Operations(%q): %v", svc, err)
		}
		if len(got) != len(want) || !slices.Equal(got, want) {
			t.Errorf("Operations(%q): got %q, want %q", svc, got, want)
		}
	}
}

// InvalidQueries must all fail validation.
func InvalidQueries() []tracestore.Query {
	big := string(make([]byte, tracestore.MaxTermBytes+1))
	return []tracestore.Query{
		{},
		{Service: "s", Limit: tracestore.MaxLimit + 1},
		{Service: "s", Limit: 1 << 62},
		{Service: "s", Limit: -1},
		{Service: "s", MinDuration: -time.Second},
		{Service: "s", MaxDuration: -1},
		{Service: "s", MinDuration: 2 * time.Second, MaxDuration: time.Second},
		{Service: "s", Start: Midnight, End: Midnight.Add(-time.Second)},
		{Operation: "op"},
		{BusinessKeys: []schemas.KV{{Key: "", Value: "v"}}},
		{BusinessKeys: []schemas.KV{{Key: "k", Value: big}}},
		{Service: "\xff\xfe"},
		{Service: "s", Dyed: 7},
		{BusinessKeys: make([]schemas.KV, tracestore.MaxBusinessKeys+1)},
	}
}

func names(f *Fixture, ids []tracestore.TraceID) string {
	byID := map[tracestore.TraceID]string{f.T1: "T1", f.T2: "T2", f.T3: "T3", f.Dyed: "Dyed", f.CrossDay: "CrossDay", f.Hostile: "Hostile", f.Forge: "Forge"}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = cmpOr(byID[id], id.String())
	}
	return fmt.Sprint(out)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// RunRows checks Rows.
func RunRows(t *testing.T, newRows RowsFactory) {
	t.Run("Fixture", func(t *testing.T) {
		rows := newRows(t)
		ctx := ctxFor(t)
		f := NewFixture()
		for i := 0; i < 2; i++ { // idempotent
			if err := rows.PutSpans(ctx, f.Spans); err != nil {
				t.Fatalf("PutSpans: %v", err)
			}
		}
		for _, id := range []tracestore.TraceID{f.T1, f.Dyed, f.CrossDay} {
			got, err := rows.GetTrace(ctx, id)
			if err != nil {
				t.Fatalf("GetTrace(%s): %v", names(f, []tracestore.TraceID{id}), err)
			}
			checkSpans(t, got, f.Trace(id))
		}
		var missing tracestore.TraceID
		missing[0] = 0x42
		if _, err := rows.GetTrace(ctx, missing); !errors.Is(err, tracestore.ErrNotFound) {
			t.Fatalf("GetTrace(missing) = %v, want ErrNotFound", err)
		}
		ids := []tracestore.TraceID{f.T2, missing, f.CrossDay, f.Dyed, f.T2}
		m, err := rows.GetTraces(ctx, ids)
		if err != nil {
			t.Fatalf("GetTraces: %v", err)
		}
		if len(m) != 3 {
			t.Fatalf("GetTraces: %d traces, want 3", len(m))
		}
		for _, id := range []tracestore.TraceID{f.T2, f.CrossDay, f.Dyed} {
			checkSpans(t, m[id], f.Trace(id))
		}
		if m, err := rows.GetTraces(ctx, nil); err != nil || len(m) != 0 {
			t.Fatalf("GetTraces(nil) = %v, %v", m, err)
		}
	})
	t.Run("Random", func(t *testing.T) {
		rows := newRows(t)
		ctx := ctxFor(t)
		r := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
		var spans []schemas.Span
		var trace tracestore.TraceID
		for i := 0; i < 60; i++ {
			s := schemastest.Span(r, 4)
			if i%3 != 0 {
				// Three spans per trace; the dye mark is a property of the whole trace
				// (propagated in tracestate), so it follows the first span.
				s.TraceID, s.Dyed = trace, spans[len(spans)-1].Dyed
			}
			trace = s.TraceID
			// Keep starts within two days of the fixture: random starts would spread one
			// span per day over six centuries (one database or index each).
			s.StartUnixNano = Midnight.UnixNano() + r.Int64N(int64(48*time.Hour)) - int64(24*time.Hour)
			spans = append(spans, s)
		}
		spans = append(spans, schemastest.EdgeSpans()[3:]...) // unicode and 1000-entry maps
		for i := len(spans) - 2; i < len(spans); i++ {
			_, _ = crand(spans[i].TraceID[:], r), crand(spans[i].SpanID[:], r)
			spans[i].StartUnixNano = Midnight.UnixNano()
		}
		if err := rows.PutSpans(ctx, spans); err != nil {
			t.Fatalf("PutSpans: %v", err)
		}
		want := map[tracestore.TraceID][]schemas.Span{}
		var ids []tracestore.TraceID
		for _, s := range spans {
			if want[s.TraceID] == nil {
				ids = append(ids, s.TraceID)
			}
			want[s.TraceID] = append(want[s.TraceID], s)
		}
		got, err := rows.GetTraces(ctx, ids)
		if err != nil {
			t.Fatalf("GetTraces: %v", err)
		}
		for _, id := range ids {
			checkSpans(t, got[id], want[id])
		}
	})
}

func crand(b []byte, r *rand.Rand) int {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return len(b)
}

func checkSpans(t *testing.T, got, want []schemas.Span) {
	t.Helper()
	got, want = slices.Clone(got), slices.Clone(want)
	for _, s := range [][]schemas.Span{got, want} {
		SortSpans(s)
		for i := range s {
			Normalize(&s[i])
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("spans differ:\ngot  %d %+v\nwant %d %+v", len(got), got, len(want), want)
	}
}

// Normalize makes empty slices nil so decoded spans compare equal to written ones.
func Normalize(s *schemas.Span) {
	if len(s.BusinessKeys) == 0 {
		s.BusinessKeys = nil
	}
	if len(s.Tags) == 0 {
		s.Tags = nil
	}
	if len(s.Events) == 0 {
		s.Events = nil
	}
	for i := range s.Events {
		if len(s.Events[i].Attributes) == 0 {
			s.Events[i].Attributes = nil
		}
	}
}

// RunStore checks Store.FindTraces end to end.
func RunStore(t *testing.T, newStore StoreFactory) {
	st := newStore(t)
	ctx := ctxFor(t)
	f := NewFixture()
	if err := st.WriteSpans(ctx, f.Spans); err != nil {
		t.Fatalf("WriteSpans: %v", err)
	}
	got, err := st.FindTraces(ctx, tracestore.Query{BusinessKeys: []schemas.KV{f.Key("order", "A")}, Dyed: tracestore.DyedInclude})
	if err != nil {
		t.Fatalf("FindTraces: %v", err)
	}
	if len(got) != 3 || got[0].TraceID != f.Dyed || got[1].TraceID != f.T3 || got[2].TraceID != f.T1 {
		t.Fatalf("FindTraces: got %d summaries %+v", len(got), got)
	}
	want := tracestore.TraceSummary{
		TraceID: f.T1, RootService: f.Gateway, RootOperation: "GET /order/{id}",
		Start: Midnight.Add(-10 * time.Second), Duration: 100 * time.Millisecond,
		SpanCount: 3, ErrorCount: 1, Services: sorted(f.DB, f.Gateway, f.Order),
		BusinessKeys: []schemas.KV{f.Key("order", "A"), f.Key("user", "U1")},
	}
	if !reflect.DeepEqual(got[2], want) {
		t.Fatalf("summary:\ngot  %+v\nwant %+v", got[2], want)
	}
	if !got[0].Dyed || got[0].ErrorCount != 1 || got[0].SpanCount != 2 {
		t.Fatalf("dyed summary: %+v", got[0])
	}
	cross, err := st.FindTraces(ctx, tracestore.Query{BusinessKeys: []schemas.KV{f.Key("order", "C")}, Start: Midnight})
	if err != nil {
		t.Fatalf("FindTraces: %v", err)
	}
	if len(cross) != 1 || cross[0].SpanCount != 2 || cross[0].Duration != 300*time.Millisecond {
		t.Fatalf("cross-day summary: %+v", cross)
	}
	if _, err := st.FindTraces(ctx, tracestore.Query{Service: "s", Limit: 1 << 40}); !errors.Is(err, tracestore.ErrInvalidQuery) {
		t.Fatalf("FindTraces(huge limit) = %v", err)
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// RunRetention checks that DropBefore removes whole old days and keeps the rest. It writes
// spans dated in 2001, so it is safe against a shared real server.
func RunRetention(t *testing.T, st *tracestore.Store, r tracestore.Retention) {
	ctx := ctxFor(t)
	f := NewFixture()
	day := time.Date(2001, 2, 3, 12, 0, 0, 0, time.UTC)
	spans := slices.Clone(f.Trace(f.T1))
	spans = append(spans, f.Trace(f.T2)...)
	for i := range spans {
		if spans[i].TraceID == f.T2 {
			spans[i].StartUnixNano = day.Add(24 * time.Hour).UnixNano()
		} else {
			spans[i].StartUnixNano = day.UnixNano()
		}
	}
	if err := st.WriteSpans(ctx, spans); err != nil {
		t.Fatalf("WriteSpans: %v", err)
	}
	// Mid-day cutoff on the next day: the first day ended before it, the second did not.
	if err := r.DropBefore(ctx, day.Add(30*time.Hour)); err != nil {
		t.Fatalf("DropBefore: %v", err)
	}
	q := tracestore.Query{Service: f.Gateway}
	refs, err := st.Index.Search(ctx, q)
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if len(refs) != 1 || refs[0].TraceID != f.T2 {
		t.Fatalf("after DropBefore: %v, want only T2", refs)
	}
	if _, err := st.Rows.GetTrace(ctx, f.T1); !errors.Is(err, tracestore.ErrNotFound) {
		t.Fatalf("GetTrace(dropped) = %v, want ErrNotFound", err)
	}
}

// runCount checks CountSpans against counting the spans: production and dyed, each span
// once however often indexed, bucketed by start minute, cut exactly at from and to, across
// midnight. Only the run's tagged services are compared (a shared server has others).
func runCount(t *testing.T, idx tracestore.Index) {
	ctx := ctxFor(t)
	f := NewFixture()
	spans := slices.Clone(f.Spans)
	var trace tracestore.TraceID
	trace[0] = 0xc0
	copy(trace[1:], f.Tag)
	// Spans every 47 s for an hour around midnight: many minutes, some with two spans.
	for i := 0; i < 77; i++ {
		svc := []string{f.Gateway, f.Order, "odd/svc=\x00" + f.Tag}[i%3]
		at := Midnight.Add(-30*time.Minute + time.Duration(i)*47*time.Second)
		spans = append(spans, schemas.Span{TraceID: trace, SpanID: schemas.SpanID{byte(i), 0xc0}, Service: svc, Operation: "op",
			StartUnixNano: at.UnixNano(), SampleRate: 1, Dyed: i%5 == 0})
	}
	for _, batch := range [][]schemas.Span{spans, spans[:10]} {
		if err := idx.IndexSpans(ctx, batch); err != nil {
			t.Fatalf("IndexSpans: %v", err)
		}
	}
	oracle := func(from, to time.Time) []tracestore.SpanCount {
		byKey := map[tracestore.SpanCount]int64{}
		for _, s := range spans {
			if s.StartUnixNano >= from.UnixNano() && s.StartUnixNano < to.UnixNano() {
				byKey[tracestore.SpanCount{Service: s.Service, Minute: tracestore.MinuteOf(s.StartUnixNano)}]++
			}
		}
		var out []tracestore.SpanCount
		for k, n := range byKey {
			k.Spans = n
			out = append(out, k)
		}
		slices.SortFunc(out, func(a, b tracestore.SpanCount) int {
			return cmp.Or(strings.Compare(a.Service, b.Service), cmp.Compare(a.Minute, b.Minute))
		})
		return out
	}
	for name, r := range map[string][2]time.Time{
		"around midnight":  {Midnight.Add(-time.Hour), Midnight.Add(time.Hour)},
		"mid-minute edges": {Midnight.Add(-17*time.Minute - 13*time.Second), Midnight.Add(-4*time.Minute - 2*time.Second)},
		"after midnight":   {Midnight, Midnight.Add(time.Hour)},
		"one nanosecond":   {time.Unix(0, spans[20].StartUnixNano), time.Unix(0, spans[20].StartUnixNano+1)},
		"nothing there":    {Midnight.Add(5 * time.Hour), Midnight.Add(6 * time.Hour)},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := idx.CountSpans(ctx, r[0], r[1])
			if err != nil {
				t.Fatalf("CountSpans: %v", err)
			}
			if !slices.IsSortedFunc(got, func(a, b tracestore.SpanCount) int {
				return cmp.Or(strings.Compare(a.Service, b.Service), cmp.Compare(a.Minute, b.Minute))
			}) {
				t.Errorf("not sorted by service, minute: %v", got)
			}
			ours := slices.DeleteFunc(got, func(c tracestore.SpanCount) bool { return !strings.HasSuffix(c.Service, f.Tag) })
			want := oracle(r[0], r[1])
			if name != "nothing there" && len(want) == 0 {
				t.Fatal("oracle counted nothing: fixture broken")
			}
			if !slices.Equal(ours, want) {
				t.Fatalf("got  %v\nwant %v", ours, want)
			}
		})
	}
	for _, r := range [][2]time.Time{{Midnight, Midnight}, {Midnight, Midnight.Add(-time.Minute)}} {
		if _, err := idx.CountSpans(ctx, r[0], r[1]); !errors.Is(err, tracestore.ErrInvalidQuery) {
			t.Errorf("CountSpans(%v, %v) = %v, want ErrInvalidQuery", r[0], r[1], err)
		}
	}
}
