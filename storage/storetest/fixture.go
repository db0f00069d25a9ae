// Package storetest is the conformance suite every trace store backend runs: RunIndex,
// RunRows and RunStore. Names and keys carry a per-run random tag, so the suite can run
// against a shared real server that keeps data from earlier runs.
package storetest

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// Midnight is the UTC midnight the fixture's cross-day trace straddles.
var Midnight = time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)

// Fixture is a small set of traces with known shapes.
type Fixture struct {
	Tag   string // random, unique per run
	Spans []schemas.Span
	// Named traces.
	T1, T2, T3, Dyed, CrossDay, Hostile, Forge tracestore.TraceID
	// Service names, tagged.
	Gateway, Order, DB string
	// ErrorType and the event names are on a few spans, tagged like the services.
	ErrorType, Retry, CacheMiss string
}

// NewFixture builds the fixture with a fresh tag.
func NewFixture() *Fixture {
	var raw [6]byte
	_, _ = rand.Read(raw[:])
	tag := hex.EncodeToString(raw[:])
	f := &Fixture{Tag: tag, Gateway: "gw-" + tag, Order: "order-" + tag, DB: "db-" + tag,
		ErrorType: "*payment.DeclinedError-" + tag, Retry: "retry-" + tag, CacheMiss: "cache.miss-" + tag}
	base := Midnight.Add(-10 * time.Second)
	at := func(d time.Duration) int64 { return base.Add(d).UnixNano() }
	bk := func(kv ...string) []schemas.KV {
		var out []schemas.KV
		for i := 0; i < len(kv); i += 2 {
			out = append(out, schemas.KV{Key: kv[i], Value: kv[i+1] + "-" + tag})
		}
		return out
	}
	var ids []tracestore.TraceID
	newTrace := func() tracestore.TraceID {
		var id tracestore.TraceID
		_, _ = rand.Read(id[:])
		ids = append(ids, id)
		return id
	}
	add := func(trace tracestore.TraceID, parent schemas.SpanID, svc, op string, start, dur time.Duration, keys []schemas.KV, status schemas.Status, dyed bool) schemas.SpanID {
		var id schemas.SpanID
		_, _ = rand.Read(id[:])
		f.Spans = append(f.Spans, schemas.Span{
			TraceID: trace, SpanID: id, ParentSpanID: parent, Domain: "shop", Service: svc, Operation: op,
			Kind: schemas.KindServer, Host: "h1", StartUnixNano: at(start), DurationNano: int64(dur),
			Status: status, SampleRate: 1, Dyed: dyed, BusinessKeys: keys,
			Tags: []schemas.KV{{Key: "http.method", Value: "GET"}}, AgentVersion: "1.0.0",
		})
		return id
	}
	const none, ok, fail = schemas.StatusUnset, schemas.StatusOK, schemas.StatusError
	var root schemas.SpanID
	getOrder := "GET /order/{id}"

	f.T1 = newTrace()
	root = add(f.T1, schemas.SpanID{}, f.Gateway, getOrder, 0, 100*time.Millisecond, bk("order", "A", "user", "U1"), ok, false)
	add(f.T1, root, f.Order, "load", 10*time.Millisecond, 50*time.Millisecond, bk("order", "A"), ok, false)
	add(f.T1, root, f.DB, "select", 20*time.Millisecond, 30*time.Millisecond, nil, fail, false)

	last := func() *schemas.Span { return &f.Spans[len(f.Spans)-1] }
	event := func(name string) schemas.SpanEvent {
		return schemas.SpanEvent{TimeUnixNano: last().StartUnixNano, Name: name}
	}

	f.T2 = newTrace()
	root = add(f.T2, schemas.SpanID{}, f.Gateway, getOrder, time.Second, 2*time.Second, bk("order", "B"), ok, false)
	add(f.T2, root, f.Order, "load", time.Second+time.Millisecond, time.Second, bk("order", "B"), fail, false)
	last().ErrorType = f.ErrorType
	last().Events = []schemas.SpanEvent{event(f.Retry), event(f.Retry)} // a name twice: indexed once

	f.T3 = newTrace()
	add(f.T3, schemas.SpanID{}, f.Gateway, "POST /pay", 2*time.Second, 10*time.Millisecond, bk("order", "A", "user", "U2"), none, false)
	last().Events = []schemas.SpanEvent{event(f.CacheMiss)}

	f.Dyed = newTrace()
	root = add(f.Dyed, schemas.SpanID{}, f.Gateway, getOrder, 3*time.Second, 20*time.Millisecond, bk("order", "A"), ok, true)
	add(f.Dyed, root, f.Order, "load", 3*time.Second+time.Millisecond, 5*time.Millisecond, bk("order", "A"), fail, true)
	last().ErrorType = f.ErrorType

	// Root just before midnight, child just after: two days.
	f.CrossDay = newTrace()
	root = add(f.CrossDay, schemas.SpanID{}, f.Gateway, getOrder, 10*time.Second-100*time.Millisecond, 300*time.Millisecond, bk("order", "C"), ok, false)
	add(f.CrossDay, root, f.Order, "load", 10*time.Second+50*time.Millisecond, 100*time.Millisecond, bk("order", "C"), ok, false)

	// Values that look like query syntax or separators must be stored and matched literally.
	f.Hostile = newTrace()
	add(f.Hostile, schemas.SpanID{}, f.Gateway, "hostile", 4*time.Second, time.Millisecond,
		bk("weird", "a/b=c", "inject", `") OR 1=1`, "k.with.dots", "*:*", "订单号", "单"), ok, false)
	f.Forge = newTrace()
	add(f.Forge, schemas.SpanID{}, f.Gateway, "hostile", 5*time.Second, time.Millisecond, bk("weird", "a"), ok, false)
	return f
}

// Key returns the tagged business key k=v as stored in the fixture.
func (f *Fixture) Key(k, v string) schemas.KV { return schemas.KV{Key: k, Value: v + "-" + f.Tag} }

// Trace returns the fixture spans of one trace.
func (f *Fixture) Trace(id tracestore.TraceID) []schemas.Span {
	var out []schemas.Span
	for _, s := range f.Spans {
		if s.TraceID == id {
			out = append(out, s)
		}
	}
	return out
}

// Oracle answers q by brute force over spans: the reference every backend must agree with.
func Oracle(spans []schemas.Span, q tracestore.Query) []tracestore.TraceID {
	newest := map[tracestore.TraceID]int64{}
	for i := range spans {
		if s := &spans[i]; q.Match(s) {
			if t, ok := newest[s.TraceID]; !ok || s.StartUnixNano > t {
				newest[s.TraceID] = s.StartUnixNano
			}
		}
	}
	ids := make([]tracestore.TraceID, 0, len(newest))
	for id := range newest {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b tracestore.TraceID) int { return cmp.Compare(newest[b], newest[a]) })
	if n := q.EffectiveLimit(); len(ids) > n {
		ids = ids[:n]
	}
	return ids
}

// SortSpans orders spans by trace id then span id, for comparisons.
func SortSpans(spans []schemas.Span) {
	slices.SortFunc(spans, func(a, b schemas.Span) int {
		if c := slices.Compare(a.TraceID[:], b.TraceID[:]); c != 0 {
			return c
		}
		return slices.Compare(a.SpanID[:], b.SpanID[:])
	})
}
