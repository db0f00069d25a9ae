package agent

import (
	"reflect"
	"testing"
)

// reset zeroes every field of a reused record except those Start or End always set and those
// only the writer fills in. Every field is filled by reflection, so a field added to
// schemas.Span later fails here until reset (or this list) accounts for it.
func TestRecordResetLeavesNothing(t *testing.T) {
	kept := map[string]bool{
		"TraceID": true, "SpanID": true, "Operation": true, "Kind": true, "StartUnixNano": true,
		"SampleRate": true, "Dyed": true, // Start
		"DurationNano": true,                                                      // End
		"Domain":       true, "Service": true, "Host": true, "AgentVersion": true, // the writer
	}
	r := newSpanRecord()
	v := reflect.ValueOf(&r.rec).Elem()
	for i := range v.NumField() {
		fill(v.Field(i))
	}
	r.reset()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		if kept[name] {
			continue
		}
		if f.Kind() == reflect.Slice && f.Len() != 0 || f.Kind() != reflect.Slice && !f.IsZero() {
			t.Errorf("reset left %s = %v", name, f.Interface())
		}
	}
}

// fill sets v to a non-zero value of its type.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	case reflect.Array:
		fill(v.Index(0))
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
		fill(v.Index(v.Len() - 1))
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}
