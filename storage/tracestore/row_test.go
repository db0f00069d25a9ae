package tracestore_test

import (
	"os"
	"testing"

	"github.com/linkedin/goavro/v2"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

func TestRowsSurviveSchemaChanges(t *testing.T) {
	want := schemas.Span{TraceID: schemas.TraceID{1}, SpanID: schemas.SpanID{2}, Service: "order", SampleRate: 1,
		BusinessKeys: []schemas.KV{{Key: "order_id", Value: "7"}}}
	var got schemas.Span
	var d tracestore.RowDecoder
	if !d.DecodeRow(tracestore.AppendRow(nil, &want), &got) || got.Service != "order" || got.SpanID != want.SpanID {
		t.Fatalf("round trip: %+v", got)
	}
	// A row stored by an older writer (span.v0 lacks dyed and agent_version) still reads.
	text, err := os.ReadFile("../../schemas/avro/history/span.v0.avsc")
	if err != nil {
		t.Fatal(err)
	}
	v0, err := goavro.NewCodec(string(text))
	if err != nil {
		t.Fatal(err)
	}
	old, err := v0.SingleFromNative(nil, map[string]any{
		"trace_id": make([]byte, 16), "span_id": []byte{9, 9, 9, 9, 9, 9, 9, 9}, "parent_span_id": make([]byte, 8),
		"domain": "shop", "service": "legacy", "operation": "op", "kind": "SERVER", "peer": "", "host": "",
		"start_unix_nano": int64(1), "duration_nano": int64(2), "status": "OK", "status_code": int32(200), "error_type": "",
		"sample_rate": 1.0, "business_keys": map[string]any{}, "tags": map[string]any{}, "events": []any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !d.DecodeRow(old, &got) || got.Service != "legacy" || got.AgentVersion != "" {
		t.Fatalf("old writer row: %+v", got)
	}
	// Damage is skipped and counted, not fatal.
	if d.DecodeRow([]byte("garbage"), &got) || d.Undecodable() != 1 {
		t.Fatal("a damaged row was not skipped and counted")
	}
}
