package schemas

import (
	"encoding/hex"
	"fmt"
)

// TraceID is the 16-byte W3C trace id; all zeros is invalid.
type TraceID [16]byte

// SpanID is the 8-byte W3C span id; all zeros means "no parent".
type SpanID [8]byte

func (t TraceID) String() string { return hex.EncodeToString(t[:]) }
func (s SpanID) String() string  { return hex.EncodeToString(s[:]) }

// IsZero reports whether the id is all zeros.
func (t TraceID) IsZero() bool { return t == TraceID{} }

// IsZero reports whether the id is all zeros.
func (s SpanID) IsZero() bool { return s == SpanID{} }

// ParseTraceID parses 32 hex digits.
func ParseTraceID(s string) (TraceID, error) {
	var t TraceID
	err := parseHex(t[:], s, "trace id")
	return t, err
}

// ParseSpanID parses 16 hex digits.
func ParseSpanID(s string) (SpanID, error) {
	var id SpanID
	err := parseHex(id[:], s, "span id")
	return id, err
}

func parseHex(dst []byte, s, what string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%s %q: want %d hex digits", what, s, 2*len(dst))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("%s %q: %w", what, s, err)
	}
	return nil
}

// SpanKind says which side of a call a span records.
type SpanKind uint8

const (
	KindInternal SpanKind = iota
	KindServer
	KindClient
	KindProducer
	KindConsumer
)

var spanKindSymbols = []string{"INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"}

// Valid reports whether k is one of the schema's symbols: an Avro enum index out of range makes
// the whole record unreadable.
func (k SpanKind) Valid() bool { return int(k) < len(spanKindSymbols) }

// Valid reports whether s is one of the schema's symbols.
func (s Status) Valid() bool { return int(s) < len(statusSymbols) }

func (k SpanKind) String() string  { return symbol(spanKindSymbols, uint8(k)) }
func (SpanKind) symbols() []string { return spanKindSymbols }
func (k *SpanKind) setIndex(i int) { *k = SpanKind(i) }
func (k SpanKind) index() int      { return int(k) }
func (s Status) String() string    { return symbol(statusSymbols, uint8(s)) }
func (Status) symbols() []string   { return statusSymbols }
func (s *Status) setIndex(i int)   { *s = Status(i) }
func (s Status) index() int        { return int(s) }
func symbol(syms []string, i uint8) string {
	if int(i) < len(syms) {
		return syms[i]
	}
	return fmt.Sprintf("UNKNOWN(%d)", i)
}

// Status is the outcome of a span.
type Status uint8

const (
	StatusUnset Status = iota
	StatusOK
	StatusError
)

var statusSymbols = []string{"UNSET", "OK", "ERROR"}

// KV is one entry of an Avro map<string>. Maps are slices in memory: they keep insertion order
// and cost no map allocation on the hot path. Keys are unique.
type KV struct {
	Key, Value string
}

// Get returns the value stored under key.
func Get(kvs []KV, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

// Set overwrites key's value or appends the entry.
func Set(kvs []KV, key, value string) []KV {
	for i := range kvs {
		if kvs[i].Key == key {
			kvs[i].Value = value
			return kvs
		}
	}
	return append(kvs, KV{key, value})
}

// Span is mercury.v1.Span.
type Span struct {
	TraceID       TraceID     `avro:"trace_id"`
	SpanID        SpanID      `avro:"span_id"`
	ParentSpanID  SpanID      `avro:"parent_span_id"`
	Domain        string      `avro:"domain"`
	Service       string      `avro:"service"`
	Operation     string      `avro:"operation"`
	Kind          SpanKind    `avro:"kind"`
	Peer          string      `avro:"peer"`
	Host          string      `avro:"host"`
	StartUnixNano int64       `avro:"start_unix_nano"`
	DurationNano  int64       `avro:"duration_nano"`
	Status        Status      `avro:"status"`
	StatusCode    int32       `avro:"status_code"`
	ErrorType     string      `avro:"error_type"`
	SampleRate    float64     `avro:"sample_rate"`
	Dyed          bool        `avro:"dyed"`
	BusinessKeys  []KV        `avro:"business_keys"`
	Tags          []KV        `avro:"tags"`
	Events        []SpanEvent `avro:"events"`
	AgentVersion  string      `avro:"agent_version"`
}

// Reset zeroes s but keeps its slices' storage for the next span, and drops every string
// they held (so none outlives a buffer it points into).
func (s *Span) Reset() {
	clear(s.Tags)
	clear(s.BusinessKeys)
	clear(s.Events)
	*s = Span{Tags: s.Tags[:0], BusinessKeys: s.BusinessKeys[:0], Events: s.Events[:0]}
}

// SpanEvent is a timestamped annotation inside a span.
type SpanEvent struct {
	TimeUnixNano int64  `avro:"time_unix_nano"`
	Name         string `avro:"name"`
	Attributes   []KV   `avro:"attributes"`
}

// Event is mercury.v1.Event: exceptions, breaker transitions and the like. Never sampled.
type Event struct {
	TimeUnixNano int64   `avro:"time_unix_nano"`
	Domain       string  `avro:"domain"`
	Service      string  `avro:"service"`
	Host         string  `avro:"host"`
	Type         string  `avro:"type"`
	Name         string  `avro:"name"`
	Message      string  `avro:"message"`
	Stack        string  `avro:"stack"`
	Operation    string  `avro:"operation"`
	TraceID      TraceID `avro:"trace_id"`
	SpanID       SpanID  `avro:"span_id"`
	Dyed         bool    `avro:"dyed"`
	Attributes   []KV    `avro:"attributes"`
	AgentVersion string  `avro:"agent_version"`
}

// Event types the agent and the gateway emit.
const (
	EventException   = "exception"
	EventBreaker     = "breaker"
	EventLimiter     = "limiter"
	EventDegrade     = "degrade"
	EventRetryWindow = "retry_window"
	// EventUpstreamHealth is a gateway upstream instance turning healthy or
	// unhealthy under active health checks.
	EventUpstreamHealth = "upstream_health"
)

// Per-minute span counts in Heartbeat.Stats (written by the agent, read by `mercury audit`):
// StatMinutePrefix + the Unix seconds of a minute's start is a delta, the spans that started
// in that minute and reached the spool since the agent's previous heartbeat, so summing an
// agent's heartbeats gives its total for the minute. StatMinuteOverflow counts spans the
// agent could not place in a minute (too many distinct minutes waiting for one heartbeat).
const (
	StatMinutePrefix   = "spans_written_minute:"
	StatMinuteOverflow = "spans_written_minute_overflow"
)

// Heartbeat is mercury.v1.Heartbeat.
type Heartbeat struct {
	TimeUnixNano    int64            `avro:"time_unix_nano"`
	Domain          string           `avro:"domain"`
	Service         string           `avro:"service"`
	Host            string           `avro:"host"`
	PID             int32            `avro:"pid"`
	AgentVersion    string           `avro:"agent_version"`
	ConfigVersion   string           `avro:"config_version"`
	StartedUnixNano int64            `avro:"started_unix_nano"`
	Stats           map[string]int64 `avro:"stats"`
}

// MetricPartial is mercury.v1.MetricPartial (aggregator phase 1 output). Counts are in
// units of 1/1024 span; SumUnits is an unsigned 128-bit big-endian sum of duration × weight.
type MetricPartial struct {
	SeriesID             string   `avro:"series_id"`
	Domain               string   `avro:"domain"`
	Service              string   `avro:"service"`
	Operation            string   `avro:"operation"`
	Kind                 SpanKind `avro:"kind"`
	Peer                 string   `avro:"peer"`
	Host                 string   `avro:"host"`
	Dyed                 bool     `avro:"dyed"`
	WindowStartUnixMilli int64    `avro:"window_start_unix_milli"`
	WindowMillis         int32    `avro:"window_millis"`
	CountUnits           int64    `avro:"count_units"`
	ErrorUnits           int64    `avro:"error_units"`
	SumUnits             []byte   `avro:"sum_units"`
	MinNano              int64    `avro:"min_nano"`
	MaxNano              int64    `avro:"max_nano"`
	Sketch               []byte   `avro:"sketch"`
	SketchSchema         int32    `avro:"sketch_schema"`
	SourcePartition      int32    `avro:"source_partition"`
	FirstOffset          int64    `avro:"first_offset"`
	LastOffset           int64    `avro:"last_offset"`
}

// MetricPoint is mercury.v1.MetricPoint (aggregator phase 2 output). The *Units fields are
// exact; Count, Errors and SumNano carry the same in spans and ns for readers wanting floats.
type MetricPoint struct {
	SeriesID     string   `avro:"series_id"`
	Domain       string   `avro:"domain"`
	Service      string   `avro:"service"`
	Operation    string   `avro:"operation"`
	Kind         SpanKind `avro:"kind"`
	Peer         string   `avro:"peer"`
	Host         string   `avro:"host"`
	Dyed         bool     `avro:"dyed"`
	MinuteUnix   int64    `avro:"minute_unix"`
	Count        float64  `avro:"count"`
	Errors       float64  `avro:"errors"`
	SumNano      float64  `avro:"sum_nano"`
	MinNano      int64    `avro:"min_nano"`
	MaxNano      int64    `avro:"max_nano"`
	Sketch       []byte   `avro:"sketch"`
	Revision     int32    `avro:"revision"`
	CountUnits   int64    `avro:"count_units"`
	ErrorUnits   int64    `avro:"error_units"`
	SumUnits     []byte   `avro:"sum_units"`
	SketchSchema int32    `avro:"sketch_schema"`
}

// Alert is mercury.v1.Alert.
type Alert struct {
	ID             string  `avro:"id"`
	Rule           string  `avro:"rule"`
	Signature      string  `avro:"signature"`
	Level          string  `avro:"level"`
	State          string  `avro:"state"`
	Domain         string  `avro:"domain"`
	Service        string  `avro:"service"`
	Operation      string  `avro:"operation"`
	Summary        string  `avro:"summary"`
	Value          float64 `avro:"value"`
	Threshold      float64 `avro:"threshold"`
	Count          int64   `avro:"count"`
	StartsUnixNano int64   `avro:"starts_unix_nano"`
	EndsUnixNano   int64   `avro:"ends_unix_nano"`
	Labels         []KV    `avro:"labels"`
}
