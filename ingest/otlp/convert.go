package otlp

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"
	coltrace "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	common "go.opentelemetry.io/proto/slim/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/slim/otlp/trace/v1"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
)

// Limits on one span, past which it is rejected (OTLP partial success) rather than stored.
const (
	// MaxAttributes bounds the attributes of a span (its resource's included) and of an event:
	// OpenTelemetry SDKs keep 128 by default.
	MaxAttributes = 1000
	// MaxMessageBytes is the largest encoded span: a record must fit the bus writer's 1 MiB
	// batch and Kafka's default message.max.bytes, key and framing included.
	MaxMessageBytes = 1<<20 - 4<<10
)

// mapping turns OTLP spans into Mercury records.
type mapping struct {
	businessKeys    map[string]string // attribute → business key name
	domainAttribute string
}

// batch is the records of one export request, encoded into one arena.
type batch struct {
	arena    []byte
	msgs     []kafka.Message
	span     schemas.Span // reused for every span
	spans    int
	events   int
	rejected int64
	reason   string // why the first rejected span was
}

func (b *batch) reset() {
	b.arena, b.msgs = b.arena[:0], b.msgs[:0]
	clear(b.msgs[:cap(b.msgs)])
	b.span.Reset()
	b.spans, b.events, b.rejected, b.reason = 0, 0, 0, ""
}

func (b *batch) reject(n int, reason string) {
	if b.rejected == 0 {
		b.reason = reason
	}
	b.rejected += int64(n)
}

// resource is what a resource says about the spans under it.
type resource struct {
	service, domain, host, agentVersion string
	tags, businessKeys                  []schemas.KV
}

func (m *mapping) resource(attrs []*common.KeyValue) (resource, error) {
	if len(attrs) > MaxAttributes {
		return resource{}, fmt.Errorf("resource with %d attributes (at most %d)", len(attrs), MaxAttributes)
	}
	var r resource
	var lang, version string
	for _, kv := range attrs {
		v := valueString(kv.GetValue())
		switch kv.GetKey() {
		case "service.name":
			r.service = v
			continue
		case "host.name":
			r.host = v
			continue
		case "telemetry.sdk.language":
			lang = v
		case "telemetry.sdk.version":
			version = v
		}
		if kv.GetKey() == m.domainAttribute {
			r.domain = v
		}
		if key, ok := m.businessKeys[kv.GetKey()]; ok {
			r.businessKeys = schemas.Set(r.businessKeys, key, v)
			continue
		}
		r.tags = schemas.Set(r.tags, kv.GetKey(), v)
	}
	if r.service == "" {
		r.service = "unknown_service" // the OpenTelemetry default for a missing service.name
	}
	if r.domain == "" {
		r.domain = r.service
	}
	r.agentVersion = "otlp"
	if lang != "" {
		r.agentVersion = "otel-" + lang + "/" + version
	}
	return r, nil
}

var spanFingerprint = schemas.Current(schemas.NameSpan).Fingerprint

// add converts every span of a request into b: each valid span a mercury.spans message
// keyed by its trace id, each exception event a mercury.events message keyed by service.
func (m *mapping) add(req *coltrace.ExportTraceServiceRequest, b *batch) error {
	for _, rs := range req.GetResourceSpans() {
		res, err := m.resource(rs.GetResource().GetAttributes())
		if err != nil {
			for _, ss := range rs.GetScopeSpans() {
				b.reject(len(ss.GetSpans()), err.Error())
			}
			continue
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s := &b.span
				s.Reset()
				if err := m.span(sp, ss.GetScope(), &res, s); err != nil {
					b.reject(1, err.Error())
					continue
				}
				ks := len(b.arena)
				b.arena = hex.AppendEncode(b.arena, s.TraceID[:])
				vs := len(b.arena)
				b.arena = schemas.AppendSpan(schemas.AppendSingleHeader(b.arena, spanFingerprint), s)
				if size := len(b.arena) - vs; size > MaxMessageBytes {
					b.arena = b.arena[:ks]
					b.reject(1, fmt.Sprintf("span %s: %d bytes encoded, at most %d", s.SpanID, size, MaxMessageBytes))
					continue
				}
				// Slices taken now stay valid when the arena grows: the old array lives on.
				b.msgs = append(b.msgs, kafka.Message{Topic: bus.TopicSpans, Key: b.arena[ks:vs:vs], Value: b.arena[vs:len(b.arena):len(b.arena)]})
				b.spans++
				if err := b.addExceptions(s); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// addExceptions sends the span's exception events to mercury.events, where the alerter
// counts them, as the Mercury agent does for the exceptions it records.
func (b *batch) addExceptions(s *schemas.Span) error {
	for _, ev := range s.Events {
		if ev.Name != "exception" {
			continue
		}
		at := ev.TimeUnixNano
		if at == 0 { // an event without a time happened within the span
			at = s.StartUnixNano + s.DurationNano
		}
		rec := schemas.Event{TimeUnixNano: at, Domain: s.Domain, Service: s.Service, Host: s.Host,
			Type: schemas.EventException, Operation: s.Operation, TraceID: s.TraceID, SpanID: s.SpanID, Dyed: s.Dyed,
			AgentVersion: s.AgentVersion}
		for _, kv := range ev.Attributes {
			switch kv.Key {
			case "exception.type":
				rec.Name = kv.Value
			case "exception.message":
				rec.Message = kv.Value
			case "exception.stacktrace":
				rec.Stack = kv.Value
			default:
				rec.Attributes = append(rec.Attributes, kv)
			}
		}
		ks := len(b.arena)
		b.arena = append(b.arena, s.Service...)
		vs := len(b.arena)
		var err error
		if b.arena, err = schemas.AppendSingle(b.arena, &rec); err != nil {
			return fmt.Errorf("encode exception event: %w", err)
		}
		b.msgs = append(b.msgs, kafka.Message{Topic: bus.TopicEvents, Key: b.arena[ks:vs:vs], Value: b.arena[vs:len(b.arena):len(b.arena)]})
		b.events++
	}
	return nil
}

// span maps one OTLP span onto s (reset), or says why it cannot be stored.
func (m *mapping) span(sp *tracepb.Span, scope *common.InstrumentationScope, res *resource, s *schemas.Span) error {
	if len(sp.GetTraceId()) != 16 || len(sp.GetSpanId()) != 8 {
		return fmt.Errorf("span %q: trace id of %d bytes and span id of %d bytes (want 16 and 8)", sp.GetName(), len(sp.GetTraceId()), len(sp.GetSpanId()))
	}
	copy(s.TraceID[:], sp.GetTraceId())
	copy(s.SpanID[:], sp.GetSpanId())
	if s.TraceID.IsZero() || s.SpanID.IsZero() {
		return fmt.Errorf("span %q: all-zero trace or span id", sp.GetName())
	}
	switch p := sp.GetParentSpanId(); len(p) {
	case 0:
	case 8:
		copy(s.ParentSpanID[:], p)
	default:
		return fmt.Errorf("span %s: parent span id of %d bytes (want 8 or none)", s.SpanID, len(p))
	}
	attrs := sp.GetAttributes()
	if len(attrs)+len(res.tags) > MaxAttributes {
		return fmt.Errorf("span %s: %d attributes (at most %d)", s.SpanID, len(attrs)+len(res.tags), MaxAttributes)
	}
	s.Domain, s.Service, s.Host, s.AgentVersion = res.domain, res.service, res.host, res.agentVersion
	s.Operation = sp.GetName()
	s.StartUnixNano = int64(sp.GetStartTimeUnixNano())
	if end := int64(sp.GetEndTimeUnixNano()); end > s.StartUnixNano {
		s.DurationNano = end - s.StartUnixNano
	}
	switch sp.GetKind() {
	case tracepb.Span_SPAN_KIND_SERVER:
		s.Kind = schemas.KindServer
	case tracepb.Span_SPAN_KIND_CLIENT:
		s.Kind = schemas.KindClient
	case tracepb.Span_SPAN_KIND_PRODUCER:
		s.Kind = schemas.KindProducer
	case tracepb.Span_SPAN_KIND_CONSUMER:
		s.Kind = schemas.KindConsumer
	default:
		s.Kind = schemas.KindInternal
	}
	s.SampleRate = 1
	if ts := sp.GetTraceState(); strings.Contains(ts, "mercury=") {
		// The span's context as it travelled: a Mercury agent upstream recorded the rate it
		// sampled at and the dye mark in its tracestate member.
		sc, _ := agent.Extract(agent.HeaderCarrier{
			"Traceparent": {agent.FormatTraceparent(agent.SpanContext{TraceID: s.TraceID, SpanID: s.SpanID, Sampled: true})},
			"Tracestate":  {ts},
		})
		if sc.SampleRate > 0 {
			s.SampleRate = sc.SampleRate
		}
		s.Dyed = sc.Dyed
	}
	s.BusinessKeys = append(s.BusinessKeys, res.businessKeys...)
	s.Tags = append(s.Tags, res.tags...)
	if scope.GetName() != "" {
		s.Tags = schemas.Set(s.Tags, "otel.scope.name", scope.GetName())
		if scope.GetVersion() != "" {
			s.Tags = schemas.Set(s.Tags, "otel.scope.version", scope.GetVersion())
		}
	}
	var peerService, address, port string
	for _, kv := range attrs {
		k, v := kv.GetKey(), valueString(kv.GetValue())
		if key, ok := m.businessKeys[k]; ok {
			s.BusinessKeys = schemas.Set(s.BusinessKeys, key, v)
			continue
		}
		s.Tags = schemas.Set(s.Tags, k, v)
		switch k {
		case "http.response.status_code", "http.status_code":
			if code, err := strconv.ParseInt(v, 10, 32); err == nil {
				s.StatusCode = int32(code)
			}
		case "peer.service":
			peerService = v
		case "server.address", "net.peer.name":
			address = v
		case "server.port", "net.peer.port":
			port = v
		}
	}
	// The peer of a call names the topology edge: the service called when the span says it,
	// else the address called.
	if s.Kind == schemas.KindClient || s.Kind == schemas.KindProducer {
		switch {
		case peerService != "":
			s.Peer = peerService
		case address != "" && port != "":
			s.Peer = address + ":" + port
		default:
			s.Peer = address
		}
	}
	switch st := sp.GetStatus(); st.GetCode() {
	case tracepb.Status_STATUS_CODE_OK:
		s.Status = schemas.StatusOK
	case tracepb.Status_STATUS_CODE_ERROR:
		s.Status = schemas.StatusError
		if st.GetMessage() != "" {
			s.Tags = schemas.Set(s.Tags, "otel.status_description", st.GetMessage())
		}
	}
	for _, ev := range sp.GetEvents() {
		if len(ev.GetAttributes()) > MaxAttributes {
			return fmt.Errorf("span %s: event %q with %d attributes (at most %d)", s.SpanID, ev.GetName(), len(ev.GetAttributes()), MaxAttributes)
		}
		e := schemas.SpanEvent{TimeUnixNano: int64(ev.GetTimeUnixNano()), Name: ev.GetName()}
		for _, kv := range ev.GetAttributes() {
			e.Attributes = schemas.Set(e.Attributes, kv.GetKey(), valueString(kv.GetValue()))
		}
		if e.Name == "exception" && s.Status == schemas.StatusError && s.ErrorType == "" {
			s.ErrorType, _ = schemas.Get(e.Attributes, "exception.type")
		}
		s.Events = append(s.Events, e)
	}
	return nil
}

// valueString renders an attribute value as Mercury's string tags hold it: strings as they
// are, numbers and booleans as Go formats them, bytes in base64, arrays and maps as JSON.
func valueString(v *common.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *common.AnyValue_StringValue:
		return x.StringValue
	case *common.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *common.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *common.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *common.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *common.AnyValue_ArrayValue, *common.AnyValue_KvlistValue:
		b, _ := json.Marshal(native(v))
		return string(b)
	}
	return ""
}

func native(v *common.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *common.AnyValue_StringValue:
		return x.StringValue
	case *common.AnyValue_BoolValue:
		return x.BoolValue
	case *common.AnyValue_IntValue:
		return x.IntValue
	case *common.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64) // NaN and Inf have no JSON number
	case *common.AnyValue_BytesValue:
		return x.BytesValue
	case *common.AnyValue_ArrayValue:
		out := make([]any, len(x.ArrayValue.GetValues()))
		for i, e := range x.ArrayValue.GetValues() {
			out[i] = native(e)
		}
		return out
	case *common.AnyValue_KvlistValue:
		out := make(map[string]any, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.GetKey()] = native(kv.GetValue())
		}
		return out
	}
	return nil
}
