package alertstore

import (
	"encoding/json"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// eventJSON is how a stored event reads in JSON: snake_case names, hex ids, an RFC 3339
// time and attributes as an object, so the API's answer leads straight to
// /api/v1/traces/{trace_id}.
type eventJSON struct {
	ID           string            `json:"id"`
	Signature    string            `json:"signature"`
	Time         time.Time         `json:"time"`
	Domain       string            `json:"domain,omitempty"`
	Service      string            `json:"service"`
	Host         string            `json:"host,omitempty"`
	Type         string            `json:"type"`
	Name         string            `json:"name,omitempty"`
	Message      string            `json:"message,omitempty"`
	Stack        string            `json:"stack,omitempty"`
	Operation    string            `json:"operation,omitempty"`
	TraceID      string            `json:"trace_id,omitempty"`
	SpanID       string            `json:"span_id,omitempty"`
	Dyed         bool              `json:"dyed,omitempty"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	AgentVersion string            `json:"agent_version,omitempty"`
}

// MarshalJSON writes the event in its API form.
func (e StoredEvent) MarshalJSON() ([]byte, error) {
	ev := &e.Event
	j := eventJSON{ID: e.ID, Signature: e.Signature, Time: time.Unix(0, ev.TimeUnixNano).UTC(), Domain: ev.Domain,
		Service: ev.Service, Host: ev.Host, Type: ev.Type, Name: ev.Name, Message: ev.Message, Stack: ev.Stack,
		Operation: ev.Operation, Dyed: ev.Dyed, AgentVersion: ev.AgentVersion}
	if !ev.TraceID.IsZero() {
		j.TraceID = ev.TraceID.String()
	}
	if !ev.SpanID.IsZero() {
		j.SpanID = ev.SpanID.String()
	}
	if len(ev.Attributes) > 0 {
		j.Attributes = make(map[string]string, len(ev.Attributes))
		for _, kv := range ev.Attributes {
			j.Attributes[kv.Key] = kv.Value
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (e *StoredEvent) UnmarshalJSON(b []byte) error {
	var j eventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = StoredEvent{ID: j.ID, Signature: j.Signature, Event: schemas.Event{TimeUnixNano: j.Time.UnixNano(),
		Domain: j.Domain, Service: j.Service, Host: j.Host, Type: j.Type, Name: j.Name, Message: j.Message,
		Stack: j.Stack, Operation: j.Operation, Dyed: j.Dyed, AgentVersion: j.AgentVersion}}
	var err error
	if j.TraceID != "" {
		if e.Event.TraceID, err = schemas.ParseTraceID(j.TraceID); err != nil {
			return err
		}
	}
	if j.SpanID != "" {
		if e.Event.SpanID, err = schemas.ParseSpanID(j.SpanID); err != nil {
			return err
		}
	}
	for k, v := range j.Attributes {
		e.Event.Attributes = append(e.Event.Attributes, schemas.KV{Key: k, Value: v})
	}
	return nil
}
