package agent

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/agent/internal/tsc"
	"github.com/mercury-apm/mercury/schemas"
)

// Categories name the instrumentation a span comes from, for the per-category switches of the
// dynamic config: a host instrumenting its cache, RPC or message-queue calls starts their
// spans with Start(ctx, op, kind, CategoryCache) and so on, and one switch turns them off.
const (
	CategoryCustom = "custom"
	CategoryHTTP   = "http"
	CategorySQL    = "sql"
	CategoryCache  = "cache"
	CategoryRPC    = "rpc"
	CategoryMQ     = "mq"
)

// Kinds, re-exported so hosts need not import schemas.
const (
	KindInternal = schemas.KindInternal
	KindServer   = schemas.KindServer
	KindClient   = schemas.KindClient
	KindProducer = schemas.KindProducer
	KindConsumer = schemas.KindConsumer
)

// Span is a handle on one timed operation. A nil *Span is valid and records nothing, so
// callers never check. Like a bytes.Buffer, a span is not safe for concurrent use: set its
// fields from one goroutine at a time, and End it once all of them are done (a second End,
// even a concurrent one, does nothing; calls after End do nothing).
//
// The handle lives inside the context node StartSpan returns (the one allocation per span);
// the record it fills is encoded by End and reused at once. A generation number in the record
// makes a handle used after End inert instead of letting it write into a reused record.
type Span struct {
	a   *Agent      // events are emitted even when the trace is not sampled
	rec *spanRecord // nil when the trace is not sampled
	gen uint64
	sc  SpanContext // what children and outgoing calls propagate; outlives the record
}

type spanRecord struct {
	gen     atomic.Uint64 // the span using it: End and Discard move it on, which ends the span
	rec     schemas.Span
	clock   *clockBase    // the base the start was read against
	since   int64         // start, as clock.read() returned it
	tagBuf  [3]schemas.KV // inline storage for the common span
	keysBuf [1]schemas.KV
	enc     []byte // End encodes here, then copies into the queue
}

// spanNode is the context a span lives in.
type spanNode struct {
	context.Context
	span Span
}

type spanKey struct{}
type remoteKey struct{}
type dyeKey struct{}

func (n *spanNode) Value(k any) any {
	if k == (spanKey{}) {
		return &n.span
	}
	return n.Context.Value(k)
}

// FromContext returns the active span, or nil.
func FromContext(ctx context.Context) *Span {
	s, _ := ctx.Value(spanKey{}).(*Span)
	return s
}

// ContextWithRemote stores a span context received from another process; the next span
// started from ctx continues that trace.
func ContextWithRemote(ctx context.Context, sc SpanContext) context.Context {
	return context.WithValue(ctx, remoteKey{}, sc)
}

// WithDye marks ctx so that a root trace started from it is dyed (load-test traffic, e.g. a
// request carrying HeaderDye at the edge). A span that continues a parent keeps the parent's
// mark instead: only the edge decides whether traffic is a load test.
func WithDye(ctx context.Context) context.Context {
	return context.WithValue(ctx, dyeKey{}, true)
}

// SpanContextFrom returns what should be propagated from ctx: the active span's context, else
// a remote one.
func SpanContextFrom(ctx context.Context) (SpanContext, bool) {
	if s := FromContext(ctx); s != nil {
		return s.sc, true
	}
	sc, ok := ctx.Value(remoteKey{}).(SpanContext)
	return sc, ok
}

// StartSpan starts a span as a child of the span in ctx (or of a remote parent, or as a root)
// with the default agent. Without a started agent it returns ctx and a nil span.
func StartSpan(ctx context.Context, op string) (context.Context, *Span) {
	return Default().StartSpan(ctx, op)
}

// StartSpan starts an internal span in the custom category.
func (a *Agent) StartSpan(ctx context.Context, op string) (context.Context, *Span) {
	return a.Start(ctx, op, KindInternal, CategoryCustom)
}

// Start starts a span of a kind in an instrumentation category (for the config switches).
func (a *Agent) Start(ctx context.Context, op string, kind schemas.SpanKind, category string) (context.Context, *Span) {
	if a == nil {
		return ctx, nil
	}
	rt := a.runtime.Load()
	if rt.killed || rt.off[category] {
		return ctx, nil
	}
	n := &spanNode{Context: ctx}
	s := &n.span
	s.a = a
	parent, ok := SpanContextFrom(ctx)
	if ok {
		s.sc = parent
		if rt.overrideDomain && parent.OriginDomain != "" && parent.OriginDomain != a.origin {
			a.decide(&s.sc, rt.sampleRate)
		}
		s.sc.SpanID = newSpanID()
	} else {
		s.sc.TraceID = newTraceID()
		s.sc.SpanID = rootSpanID(s.sc.TraceID)
		a.decide(&s.sc, rt.sampleRate)
		s.sc.Dyed = ctx.Value(dyeKey{}) != nil
	}
	if !s.sc.Sampled {
		return n, s
	}
	r := a.records.Get().(*spanRecord)
	s.rec, s.gen = r, r.gen.Load()
	cb := a.clock.Load()
	r.clock, r.since = cb, cb.read()
	r.rec.TraceID, r.rec.SpanID = s.sc.TraceID, s.sc.SpanID
	if ok {
		r.rec.ParentSpanID = parent.SpanID
	}
	if !kind.Valid() {
		kind = KindInternal
	}
	r.rec.Operation, r.rec.Kind = op, kind
	r.rec.StartUnixNano = cb.wall + cb.nanos(r.since)
	r.rec.SampleRate, r.rec.Dyed = s.sc.SampleRate, s.sc.Dyed
	return n, s
}

// decide takes the sampling decision for a trace entering here.
func (a *Agent) decide(sc *SpanContext, rate float64) {
	sc.SampleRate, sc.OriginDomain = rate, a.origin
	sc.Sampled = rate >= 1 || rand.Float64() < rate
}

// clockBase lets Start read one clock instead of two, and a cheap one where there is one.
// time.Now reads the wall and the monotonic clock; a span's start is instead the wall time of a
// recent base plus the time elapsed since it. Elapsed time comes from the CPU's invariant
// time-stamp counter where it is usable (10 ns a read on a VM, against 30 for the monotonic
// clock), scaled by a rate the writer measures against the monotonic clock between bases, so
// a rate that drifts (a migrated VM) is corrected within a FlushInterval; else from the
// monotonic clock. The writer takes a new base every FlushInterval, so a stepped wall clock
// shows in start times within that interval too.
type clockBase struct {
	mono time.Time // carries the monotonic reading
	wall int64     // the same instant as Unix nanoseconds
	tsc  uint64    // the counter at the same instant
	// nsPerTick is the counter's measured period; 0 until measured or where it is unusable,
	// and then read returns monotonic nanoseconds.
	nsPerTick float64
}

// newClockBase takes a base; the counter's rate is measured from prev's base to this one.
func newClockBase(prev *clockBase) *clockBase {
	cb := &clockBase{}
	if !tsc.Usable() {
		cb.mono = time.Now()
		cb.wall = cb.mono.UnixNano()
		return cb
	}
	// The counter is read on both sides of time.Now; the tightest of a few tries pins the pair
	// to within tens of nanoseconds even if the goroutine is preempted in one of them.
	best := uint64(math.MaxUint64)
	for range 3 {
		c0 := tsc.Read()
		now := time.Now()
		if c1 := tsc.Read(); c1 > c0 && c1-c0 < best {
			best, cb.mono, cb.tsc = c1-c0, now, c0+(c1-c0)/2
		}
	}
	if best == math.MaxUint64 { // the counter does not advance: do without it
		cb.mono = time.Now()
		cb.wall = cb.mono.UnixNano()
		return cb
	}
	cb.wall = cb.mono.UnixNano()
	if prev != nil && prev.tsc != 0 && cb.tsc > prev.tsc {
		// Measure over at least a millisecond, and only when the bracket pins this base to
		// within a thousandth of the interval; else keep the last rate.
		cb.nsPerTick = prev.nsPerTick
		if d := cb.mono.Sub(prev.mono); d >= time.Millisecond && best*1000 < cb.tsc-prev.tsc {
			// Plausible clocks only (10 MHz to 100 GHz); else the monotonic clock.
			cb.nsPerTick = 0
			if p := float64(d) / float64(cb.tsc-prev.tsc); p >= 0.01 && p <= 100 {
				cb.nsPerTick = p
			}
		}
	}
	return cb
}

// read returns a reading for nanos: counter ticks since the base, or nanoseconds.
func (cb *clockBase) read() int64 {
	if cb.nsPerTick != 0 {
		return int64(tsc.Read() - cb.tsc)
	}
	return int64(time.Since(cb.mono))
}

// nanos converts a difference of readings to nanoseconds.
func (cb *clockBase) nanos(d int64) int64 {
	if cb.nsPerTick != 0 {
		return int64(float64(d) * cb.nsPerTick)
	}
	return d
}

func newSpanRecord() *spanRecord {
	r := &spanRecord{}
	r.rec.Tags, r.rec.BusinessKeys = r.tagBuf[:0], r.keysBuf[:0]
	return r
}

// reset readies an ended record for its next span. It zeroes only what Start does not set
// and the setters may have: zeroing the whole record (schemas.Span.Reset) cost twice as much.
// The writer fills in domain, service, host and version. TestRecordResetLeavesNothing keeps
// this list complete.
func (r *spanRecord) reset() {
	s := &r.rec
	clear(s.Tags)
	clear(s.BusinessKeys)
	clear(s.Events)
	s.Tags, s.BusinessKeys, s.Events = s.Tags[:0], s.BusinessKeys[:0], s.Events[:0]
	s.ParentSpanID, s.Peer, s.Status, s.StatusCode, s.ErrorType = schemas.SpanID{}, "", 0, 0, ""
}

// Ids are random bits: their byte order does not matter, so the native order is used.
func newTraceID() (t schemas.TraceID) {
	for t.IsZero() {
		binary.LittleEndian.PutUint64(t[:8], rand.Uint64())
		binary.LittleEndian.PutUint64(t[8:], rand.Uint64())
	}
	return t
}

// rootSpanID is the trace id's second half, as Zipkin and Jaeger do: it is as random as a
// fresh id, and a root span then costs one draw fewer.
func rootSpanID(t schemas.TraceID) (s schemas.SpanID) {
	if copy(s[:], t[8:]); s.IsZero() {
		return newSpanID()
	}
	return s
}

func newSpanID() (s schemas.SpanID) {
	for s.IsZero() {
		binary.LittleEndian.PutUint64(s[:], rand.Uint64())
	}
	return s
}

// live returns the record while the span may still be changed.
func (s *Span) live() *schemas.Span {
	if s == nil || s.rec == nil || s.rec.gen.Load() != s.gen {
		return nil
	}
	return &s.rec.rec
}

// Context returns the span's propagation context.
func (s *Span) Context() SpanContext {
	if s == nil {
		return SpanContext{}
	}
	return s.sc
}

// Sampled reports whether the span is recorded.
func (s *Span) Sampled() bool { return s != nil && s.sc.Sampled }

// SetOperation renames the span (for instance once the router knows the route template).
func (s *Span) SetOperation(op string) {
	if r := s.live(); r != nil {
		r.Operation = op
	}
}

// SetKind sets the span kind; a value outside the schema's kinds is ignored.
func (s *Span) SetKind(k schemas.SpanKind) {
	if r := s.live(); r != nil && k.Valid() {
		r.Kind = k
	}
}

// SetPeer names the other side of a client span (service, database).
func (s *Span) SetPeer(peer string) {
	if r := s.live(); r != nil {
		r.Peer = peer
	}
}

// SetTag sets a tag. Values are masked before they leave the process.
func (s *Span) SetTag(k, v string) {
	if r := s.live(); r != nil {
		r.Tags = schemas.Set(r.Tags, k, v)
	}
}

// SetBusinessKey attaches a searchable business key (order_id, user_id...) to the span.
func (s *Span) SetBusinessKey(k, v string) {
	if r := s.live(); r != nil {
		r.BusinessKeys = schemas.Set(r.BusinessKeys, k, v)
	}
}

// SetStatus sets the outcome and a protocol status code (HTTP status, SQL error code...); a
// status outside the schema's is ignored, code and all.
func (s *Span) SetStatus(st schemas.Status, code int) {
	if r := s.live(); r != nil && st.Valid() {
		r.Status, r.StatusCode = st, int32(code)
	}
}

// AddEvent adds a timestamped annotation; attrs are key, value pairs.
func (s *Span) AddEvent(name string, attrs ...string) {
	r := s.live()
	if r == nil {
		return
	}
	ev := schemas.SpanEvent{TimeUnixNano: time.Now().UnixNano(), Name: name}
	for i := 0; i+1 < len(attrs); i += 2 {
		ev.Attributes = schemas.Set(ev.Attributes, attrs[i], attrs[i+1])
	}
	r.Events = append(r.Events, ev)
}

// End records the span's duration and queues it. It never blocks: when the writer is behind,
// the span is dropped and counted.
func (s *Span) End() {
	r := s.live()
	if r == nil {
		return
	}
	sr := s.rec
	if !sr.gen.CompareAndSwap(s.gen, s.gen+1) {
		return // ended concurrently: only one End may hand the record over
	}
	r.DurationNano = max(0, sr.clock.nanos(sr.clock.read()-sr.since))
	res := int(s.a.spans.refusing.Load())
	if res == pushed {
		// Domain, service, host and version are the writer's to fill in: they are the same
		// in every span, so the queue does not carry them.
		sr.enc = appendQueued(sr.enc[:0], r)
		res = s.a.spans.push(sr.enc)
	}
	switch res {
	case queueFull:
		s.a.dropQueue.Add(1)
	case queueClosed:
		s.a.dropClosed.Add(1)
	}
	s.a.recycle(sr)
}

// Discard ends the span without recording it: for instrumentation that learns the call it
// timed never happened (a SQL driver answering driver.ErrSkip, so database/sql retries the
// statement another way and that attempt gets its own span).
func (s *Span) Discard() {
	if s.live() == nil || !s.rec.gen.CompareAndSwap(s.gen, s.gen+1) {
		return
	}
	s.a.recycle(s.rec)
}

// maxPooledEnc keeps a record that once encoded a huge span from pinning its buffer.
const maxPooledEnc = 4 << 10

func (a *Agent) recycle(r *spanRecord) {
	r.reset()
	if cap(r.enc) > maxPooledEnc {
		r.enc = nil
	}
	a.records.Put(r)
}
