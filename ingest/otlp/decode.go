package otlp

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	coltrace "go.opentelemetry.io/proto/slim/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func decodeProtobuf(body []byte, req *coltrace.ExportTraceServiceRequest) error {
	if err := proto.Unmarshal(body, req); err != nil {
		return fmt.Errorf("protobuf body: %w", err)
	}
	return nil
}

// decodeJSON reads OTLP/JSON: protobuf's JSON mapping, except that trace and span ids are
// hex, not base64 (the OTLP specification's one departure from it). The ids are rewritten
// to base64 in a generic tree, then protojson reads the tree. Unknown fields are ignored, as
// the specification asks of receivers.
func decodeJSON(body []byte, req *coltrace.ExportTraceServiceRequest) error {
	var tree map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // int64 nanoseconds keep every digit
	if err := dec.Decode(&tree); err != nil {
		return fmt.Errorf("JSON body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("JSON body: data after the object")
	}
	for _, rs := range objects(tree, "resourceSpans", "resource_spans") {
		for _, ss := range objects(rs, "scopeSpans", "scope_spans") {
			for _, sp := range objects(ss, "spans") {
				if err := hexIDs(sp, "traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"); err != nil {
					return err
				}
				for _, l := range objects(sp, "links") {
					if err := hexIDs(l, "traceId", "trace_id", "spanId", "span_id"); err != nil {
						return err
					}
				}
			}
		}
	}
	b, err := json.Marshal(tree)
	if err != nil {
		return fmt.Errorf("JSON body: %w", err)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, req); err != nil {
		return fmt.Errorf("JSON body: %w", err)
	}
	return nil
}

// objects returns the objects of the array under either name (the lowerCamelCase JSON name
// or the proto field name, which protojson both accept); anything else is left for protojson
// to refuse.
func objects(m map[string]any, names ...string) []map[string]any {
	var out []map[string]any
	for _, n := range names {
		list, _ := m[n].([]any)
		for _, e := range list {
			if o, ok := e.(map[string]any); ok {
				out = append(out, o)
			}
		}
	}
	return out
}

func hexIDs(m map[string]any, names ...string) error {
	for _, n := range names {
		s, ok := m[n].(string)
		if !ok {
			continue
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return fmt.Errorf("JSON body: %s %q is not hex", n, s)
		}
		m[n] = base64.StdEncoding.EncodeToString(b)
	}
	return nil
}
