package jaeger

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// The JSON shape of Jaeger's query API (jaeger model/json and cmd/query/app/http_handler.go),
// the one the Jaeger UI and Grafana's Jaeger data source parse.

// Response is every answer: data, and on failure the errors with data null.
type Response struct {
	Data   any     `json:"data"`
	Total  int     `json:"total"`
	Limit  int     `json:"limit"`
	Offset int     `json:"offset"`
	Errors []Error `json:"errors"`
}

// Error is one entry of Response.Errors.
type Error struct {
	Code    int    `json:"code,omitempty"`
	Msg     string `json:"msg"`
	TraceID string `json:"traceID,omitempty"`
}

// Trace is one trace: its spans, and the processes they name by id.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
	Warnings  []string           `json:"warnings"`
}

// Span times are microseconds: since the Unix epoch for StartTime, of duration for Duration.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	Flags         uint32      `json:"flags,omitempty"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	Tags          []KeyValue  `json:"tags"`
	Logs          []Log       `json:"logs"`
	ProcessID     string      `json:"processID"`
	Warnings      []string    `json:"warnings"`
}

// Reference links a span to its parent (CHILD_OF).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// Process is the emitter of spans: a service on a host.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Log is a span event; its name is the "event" field.
type Log struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []KeyValue `json:"fields"`
}

// KeyValue is a typed tag: Type is string, bool, int64, float64 or binary.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

func str(k, v string) KeyValue { return KeyValue{Key: k, Type: "string", Value: v} }

// Tag keys Mercury adds beside the span's own tags.
const (
	TagDomain       = "mercury.domain"
	TagAgentVersion = "mercury.agent_version"
	TagSampleRate   = "mercury.sample_rate"
	TagDyed         = "mercury.dyed"
	TagStatusCode   = "mercury.status_code"
)

// FromSpans converts the spans of one trace, ordered by start time. Spans of one service,
// host, domain and agent version share a process ("p1", "p2", ... in order of appearance).
func FromSpans(id tracestore.TraceID, spans []schemas.Span) Trace {
	spans = slices.Clone(spans)
	slices.SortStableFunc(spans, func(a, b schemas.Span) int { return cmp.Compare(a.StartUnixNano, b.StartUnixNano) })
	type procKey struct{ service, host, domain, version string }
	procs := map[procKey]string{}
	tr := Trace{TraceID: id.String(), Spans: make([]Span, 0, len(spans)), Processes: map[string]Process{}}
	for i := range spans {
		sp := &spans[i]
		k := procKey{sp.Service, sp.Host, sp.Domain, sp.AgentVersion}
		pid, ok := procs[k]
		if !ok {
			pid = "p" + strconv.Itoa(len(procs)+1)
			procs[k] = pid
			tr.Processes[pid] = process(sp)
		}
		tr.Spans = append(tr.Spans, span(sp, pid))
	}
	return tr
}

func process(sp *schemas.Span) Process {
	p := Process{ServiceName: sp.Service, Tags: []KeyValue{}}
	if sp.Host != "" {
		p.Tags = append(p.Tags, str("hostname", sp.Host))
	}
	if sp.Domain != "" {
		p.Tags = append(p.Tags, str(TagDomain, sp.Domain))
	}
	if sp.AgentVersion != "" {
		p.Tags = append(p.Tags, str(TagAgentVersion, sp.AgentVersion))
	}
	return p
}

// span converts one span. Business keys come first among the tags (a tag of the same key is
// left out), then the span's tags, then what Jaeger's UI reads from tags: span.kind, error,
// otel.status_code, error.type, peer.service.
func span(sp *schemas.Span, pid string) Span {
	out := Span{
		TraceID: sp.TraceID.String(), SpanID: sp.SpanID.String(), Flags: 1, OperationName: sp.Operation,
		References: []Reference{}, StartTime: max(sp.StartUnixNano, 0) / 1000, Duration: max(sp.DurationNano, 0) / 1000,
		Tags: make([]KeyValue, 0, len(sp.BusinessKeys)+len(sp.Tags)+6), Logs: []Log{}, ProcessID: pid,
	}
	if !sp.ParentSpanID.IsZero() {
		out.References = append(out.References, Reference{RefType: "CHILD_OF", TraceID: out.TraceID, SpanID: sp.ParentSpanID.String()})
	}
	for _, kv := range sp.BusinessKeys {
		out.Tags = append(out.Tags, str(kv.Key, kv.Value))
	}
	for _, kv := range sp.Tags {
		if _, isKey := schemas.Get(sp.BusinessKeys, kv.Key); !isKey {
			out.Tags = append(out.Tags, str(kv.Key, kv.Value))
		}
	}
	if sp.Kind.Valid() {
		out.Tags = append(out.Tags, str("span.kind", strings.ToLower(sp.Kind.String())))
	}
	switch {
	case tracestore.IsError(sp):
		out.Tags = append(out.Tags, KeyValue{Key: "error", Type: "bool", Value: true}, str("otel.status_code", "ERROR"))
	case sp.Status == schemas.StatusOK:
		out.Tags = append(out.Tags, str("otel.status_code", "OK"))
	}
	if sp.ErrorType != "" {
		out.Tags = append(out.Tags, str("error.type", sp.ErrorType))
	}
	if sp.Peer != "" {
		out.Tags = append(out.Tags, str("peer.service", sp.Peer))
	}
	if sp.StatusCode != 0 {
		out.Tags = append(out.Tags, KeyValue{Key: TagStatusCode, Type: "int64", Value: int64(sp.StatusCode)})
	}
	if r := sp.SampleRate; !math.IsNaN(r) && !math.IsInf(r, 0) { // JSON holds no NaN
		out.Tags = append(out.Tags, KeyValue{Key: TagSampleRate, Type: "float64", Value: r})
	}
	if sp.Dyed {
		out.Tags = append(out.Tags, KeyValue{Key: TagDyed, Type: "bool", Value: true})
	}
	for _, ev := range sp.Events {
		l := Log{Timestamp: max(ev.TimeUnixNano, 0) / 1000, Fields: make([]KeyValue, 0, 1+len(ev.Attributes))}
		l.Fields = append(l.Fields, str("event", ev.Name))
		for _, kv := range ev.Attributes {
			l.Fields = append(l.Fields, str(kv.Key, kv.Value))
		}
		out.Logs = append(out.Logs, l)
	}
	return out
}
