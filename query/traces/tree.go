package traces

import (
	"sort"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// Span is the API's view of a span: ids in hex, maps as objects, children nested.
type Span struct {
	TraceID      string    `json:"trace_id"`
	SpanID       string    `json:"span_id"`
	ParentSpanID string    `json:"parent_span_id,omitempty"`
	Domain       string    `json:"domain"`
	Service      string    `json:"service"`
	Operation    string    `json:"operation"`
	Kind         string    `json:"kind"`
	Peer         string    `json:"peer,omitempty"`
	Host         string    `json:"host,omitempty"`
	Start        time.Time `json:"start"`
	// OffsetNano is the start relative to the trace's start, exact: a client drawing a
	// waterfall must not go through a millisecond Date.
	OffsetNano   int64             `json:"offset_nano"`
	DurationNano int64             `json:"duration_nano"`
	Status       string            `json:"status"`
	StatusCode   int32             `json:"status_code,omitempty"`
	ErrorType    string            `json:"error_type,omitempty"`
	SampleRate   float64           `json:"sample_rate"`
	Dyed         bool              `json:"dyed,omitempty"`
	BusinessKeys map[string]string `json:"business_keys,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	Events       []SpanEvent       `json:"events,omitempty"`
	AgentVersion string            `json:"agent_version,omitempty"`
	// Orphan marks a span whose parent is not in the store (not sampled, lost, or late).
	Orphan   bool    `json:"orphan,omitempty"`
	Children []*Span `json:"children,omitempty"`
}

// SpanEvent is an annotation inside a span.
type SpanEvent struct {
	Time       time.Time         `json:"time"`
	Name       string            `json:"name"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Trace is a whole call chain.
type Trace struct {
	TraceID      string    `json:"trace_id"`
	Start        time.Time `json:"start"`
	DurationNano int64     `json:"duration_nano"`
	SpanCount    int       `json:"span_count"`
	ErrorCount   int       `json:"error_count"`
	Services     []string  `json:"services"`
	Roots        []*Span   `json:"roots"`
}

func kvMap(kvs []schemas.KV) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func spanView(s *schemas.Span) *Span {
	v := &Span{
		TraceID: s.TraceID.String(), SpanID: s.SpanID.String(), Domain: s.Domain, Service: s.Service,
		Operation: s.Operation, Kind: s.Kind.String(), Peer: s.Peer, Host: s.Host,
		Start: time.Unix(0, s.StartUnixNano).UTC(), DurationNano: s.DurationNano, Status: s.Status.String(),
		StatusCode: s.StatusCode, ErrorType: s.ErrorType, SampleRate: sampleRate(s.SampleRate), Dyed: s.Dyed,
		BusinessKeys: kvMap(s.BusinessKeys), Tags: kvMap(s.Tags), AgentVersion: s.AgentVersion,
	}
	if !s.ParentSpanID.IsZero() {
		v.ParentSpanID = s.ParentSpanID.String()
	}
	for _, e := range s.Events {
		v.Events = append(v.Events, SpanEvent{Time: time.Unix(0, e.TimeUnixNano).UTC(), Name: e.Name, Attributes: kvMap(e.Attributes)})
	}
	return v
}

// BuildTree nests spans under their parents, children by start time. Spans whose parent is
// missing become extra roots marked orphan; hostile data (duplicate ids, cycles) cannot loop.
func BuildTree(id tracestore.TraceID, spans []schemas.Span) Trace {
	sum := tracestore.Summarize(id, spans)
	t := Trace{TraceID: id.String(), Start: sum.Start, DurationNano: int64(sum.Duration), SpanCount: sum.SpanCount,
		ErrorCount: sum.ErrorCount, Services: sum.Services}
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].StartUnixNano < spans[j].StartUnixNano })
	views := make(map[schemas.SpanID]*Span, len(spans))
	order := make([]*Span, 0, len(spans))
	for i := range spans {
		if _, dup := views[spans[i].SpanID]; dup {
			continue
		}
		v := spanView(&spans[i])
		v.OffsetNano = spans[i].StartUnixNano - sum.Start.UnixNano()
		views[spans[i].SpanID] = v
		order = append(order, v)
	}
	parentOf := func(v *Span) *Span {
		if v.ParentSpanID == "" || v.ParentSpanID == v.SpanID {
			return nil
		}
		pid, _ := schemas.ParseSpanID(v.ParentSpanID)
		return views[pid]
	}
	cyclic := cyclicSpans(order, parentOf)
	for _, v := range order {
		if p := parentOf(v); p != nil && !cyclic[v] {
			p.Children = append(p.Children, v)
			continue
		}
		// No parent in the store (not sampled, lost, late), or caught in a parent cycle.
		v.Orphan = v.ParentSpanID != ""
		t.Roots = append(t.Roots, v)
	}
	return t
}

// cyclicSpans marks the spans whose ancestor chain loops, in linear time: each span's chain is
// walked once, and what a walk learns is kept for the spans after it.
func cyclicSpans(spans []*Span, parentOf func(*Span) *Span) map[*Span]bool {
	const (
		walking = iota + 1
		ok
		loop
	)
	state := make(map[*Span]int, len(spans))
	var path []*Span
	for _, v := range spans {
		path = path[:0]
		verdict := ok
		for n := v; n != nil; n = parentOf(n) {
			if st := state[n]; st != 0 {
				if st != ok {
					verdict = loop // reached the walk itself, or a known loop
				}
				break
			}
			state[n] = walking
			path = append(path, n)
		}
		for _, n := range path {
			state[n] = verdict
		}
	}
	cyclic := map[*Span]bool{}
	for v, st := range state {
		if st == loop {
			cyclic[v] = true
		}
	}
	return cyclic
}

// sampleRate shows a rate outside (0,1] — only a broken or hostile agent writes one — as 0,
// "unknown", rather than letting NaN or Inf break the JSON of the whole trace.
func sampleRate(r float64) float64 {
	if r > 0 && r <= 1 {
		return r
	}
	return 0
}
