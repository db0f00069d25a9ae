package schemas

import (
	"fmt"
	"reflect"
	"sync"
)

// The reflection mapper turns the Go types into goavro's native form (map[string]any per record)
// and back, guided by `avro:"field"` tags. One mapper serves every record type; it is not on a
// hot path (spans have their own codec).

type enumValue interface {
	symbols() []string
	index() int
}

type enumPointer interface {
	symbols() []string
	setIndex(int)
}

var (
	kvSliceType = reflect.TypeOf([]KV(nil))
	enumType    = reflect.TypeOf((*enumValue)(nil)).Elem()
	fieldCache  sync.Map // reflect.Type -> []field
)

type field struct {
	index int
	name  string
}

func fieldsOf(t reflect.Type) []field {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]field)
	}
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		if name := t.Field(i).Tag.Get("avro"); name != "" {
			fs = append(fs, field{i, name})
		}
	}
	fieldCache.Store(t, fs)
	return fs
}

// toNative converts a record struct (or pointer to one) to goavro's native form.
func toNative(rec any) map[string]any {
	v := reflect.Indirect(reflect.ValueOf(rec))
	return structToNative(v)
}

func structToNative(v reflect.Value) map[string]any {
	fs := fieldsOf(v.Type())
	m := make(map[string]any, len(fs))
	for _, f := range fs {
		m[f.name] = valueToNative(v.Field(f.index))
	}
	return m
}

func valueToNative(v reflect.Value) any {
	if v.Type().Implements(enumType) {
		e := v.Interface().(enumValue)
		if i := e.index(); i < len(e.symbols()) {
			return e.symbols()[i]
		}
		return e.symbols()[0]
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Int32:
		return int32(v.Int())
	case reflect.Int64:
		return v.Int()
	case reflect.Float64:
		return v.Float()
	case reflect.Bool:
		return v.Bool()
	case reflect.Array: // fixed
		b := make([]byte, v.Len())
		reflect.Copy(reflect.ValueOf(b), v)
		return b
	case reflect.Map: // map<long>
		m := make(map[string]any, v.Len())
		it := v.MapRange()
		for it.Next() {
			m[it.Key().String()] = it.Value().Int()
		}
		return m
	case reflect.Slice:
		switch {
		case v.Type().Elem().Kind() == reflect.Uint8:
			return append([]byte{}, v.Bytes()...)
		case v.Type() == kvSliceType:
			m := make(map[string]any, v.Len())
			for _, kv := range v.Interface().([]KV) {
				m[kv.Key] = kv.Value
			}
			return m
		default: // array of records
			a := make([]any, v.Len())
			for i := range a {
				a[i] = structToNative(v.Index(i))
			}
			return a
		}
	}
	panic(fmt.Sprintf("schemas: no Avro mapping for Go type %s", v.Type()))
}

// fromNative fills rec (a pointer to a record struct) from goavro's native form. Fields the
// writer's schema did not have stay at their zero value, which is the declared default of every
// field added since (TestDefaultsAreZeroValues keeps that true).
func fromNative(native any, rec any) error {
	m, ok := native.(map[string]any)
	if !ok {
		return fmt.Errorf("schemas: record native is %T, want map", native)
	}
	return nativeToStruct(m, reflect.ValueOf(rec).Elem())
}

func nativeToStruct(m map[string]any, v reflect.Value) error {
	for _, f := range fieldsOf(v.Type()) {
		n, ok := m[f.name]
		if !ok {
			continue
		}
		if err := nativeToValue(n, v.Field(f.index)); err != nil {
			return fmt.Errorf("field %s: %w", f.name, err)
		}
	}
	return nil
}

func nativeToValue(n any, v reflect.Value) error {
	bad := func() error { return fmt.Errorf("native %T does not fit %s", n, v.Type()) }
	if e, ok := v.Addr().Interface().(enumPointer); ok {
		s, ok := n.(string)
		if !ok {
			return bad()
		}
		for i, sym := range e.symbols() {
			if sym == s {
				e.setIndex(i)
				return nil
			}
		}
		return fmt.Errorf("unknown enum symbol %q", s)
	}
	switch v.Kind() {
	case reflect.String:
		s, ok := n.(string)
		if !ok {
			return bad()
		}
		v.SetString(s)
	case reflect.Int32, reflect.Int64:
		switch x := n.(type) {
		case int32:
			v.SetInt(int64(x))
		case int64:
			v.SetInt(x)
		default:
			return bad()
		}
	case reflect.Float64:
		x, ok := n.(float64)
		if !ok {
			return bad()
		}
		v.SetFloat(x)
	case reflect.Bool:
		x, ok := n.(bool)
		if !ok {
			return bad()
		}
		v.SetBool(x)
	case reflect.Array:
		b, ok := n.([]byte)
		if !ok || len(b) != v.Len() {
			return bad()
		}
		reflect.Copy(v, reflect.ValueOf(b))
	case reflect.Map:
		src, ok := n.(map[string]any)
		if !ok {
			return bad()
		}
		dst := reflect.MakeMapWithSize(v.Type(), len(src))
		for k, x := range src {
			i, ok := x.(int64)
			if !ok {
				return bad()
			}
			dst.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(i))
		}
		v.Set(dst)
	case reflect.Slice:
		switch {
		case v.Type().Elem().Kind() == reflect.Uint8:
			b, ok := n.([]byte)
			if !ok {
				return bad()
			}
			v.SetBytes(append([]byte{}, b...))
		case v.Type() == kvSliceType:
			src, ok := n.(map[string]any)
			if !ok {
				return bad()
			}
			kvs := make([]KV, 0, len(src))
			for k, x := range src {
				s, ok := x.(string)
				if !ok {
					return bad()
				}
				kvs = append(kvs, KV{k, s})
			}
			v.Set(reflect.ValueOf(kvs))
		default:
			src, ok := n.([]any)
			if !ok {
				return bad()
			}
			s := reflect.MakeSlice(v.Type(), len(src), len(src))
			for i, x := range src {
				m, ok := x.(map[string]any)
				if !ok {
					return bad()
				}
				if err := nativeToStruct(m, s.Index(i)); err != nil {
					return err
				}
			}
			v.Set(s)
		}
	default:
		return bad()
	}
	return nil
}
