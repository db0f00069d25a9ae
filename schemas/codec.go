package schemas

import (
	"embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"sync"

	"github.com/linkedin/goavro/v2"
)

//go:embed avro/*.avsc avro/history/*.avsc
var avroFiles embed.FS

// Full names of the records.
const (
	NameSpan          = "mercury.v1.Span"
	NameEvent         = "mercury.v1.Event"
	NameHeartbeat     = "mercury.v1.Heartbeat"
	NameMetricPartial = "mercury.v1.MetricPartial"
	NameMetricPoint   = "mercury.v1.MetricPoint"
	NameAlert         = "mercury.v1.Alert"
)

// Schema is one writer schema the registry knows: a current one or a historical one.
type Schema struct {
	Name        string // full name, e.g. mercury.v1.Span
	Fingerprint uint64 // CRC-64-AVRO (Rabin) of the parsing canonical form
	Codec       *goavro.Codec
}

// JSON returns the schema text as goavro canonicalised it.
func (s *Schema) JSON() string { return s.Codec.Schema() }

type registry struct {
	mu      sync.RWMutex
	byFP    map[uint64]*Schema
	current map[string]*Schema
}

var reg = sync.OnceValue(func() *registry {
	r := &registry{byFP: map[uint64]*Schema{}, current: map[string]*Schema{}}
	load := func(pattern string, current bool) {
		names, _ := fs.Glob(avroFiles, pattern)
		sort.Strings(names)
		for _, n := range names {
			b, _ := avroFiles.ReadFile(n)
			s, err := r.register(string(b))
			if err != nil {
				panic(fmt.Sprintf("schemas: embedded %s: %v", n, err)) // a build defect, caught by every test
			}
			if current {
				r.current[s.Name] = s
			}
		}
	}
	load("avro/*.avsc", true)
	load("avro/history/*.avsc", false)
	return r
})

func (r *registry) register(schemaJSON string) (*Schema, error) {
	c, err := goavro.NewCodec(schemaJSON)
	if err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	s := &Schema{Name: recordName(c), Fingerprint: c.Rabin, Codec: c}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.byFP[s.Fingerprint]; ok {
		return old, nil
	}
	r.byFP[s.Fingerprint] = s
	return s, nil
}

func recordName(c *goavro.Codec) string {
	// The canonical form starts {"name":"<full name>",...} for a named record.
	var v struct{ Name string }
	_ = json.Unmarshal([]byte(c.CanonicalSchema()), &v)
	return v.Name
}

// Current returns the schema this build writes for a record name.
func Current(name string) *Schema { return reg().current[name] }

// Lookup finds a writer schema by fingerprint.
func Lookup(fp uint64) (*Schema, bool) {
	r := reg()
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.byFP[fp]
	return s, ok
}

// Register adds a writer schema met in the wild (an OCF header, say) so its records decode.
func Register(schemaJSON string) (*Schema, error) { return reg().register(schemaJSON) }

// ErrUnknownSchema means a message names a writer schema this build has never seen.
var ErrUnknownSchema = errors.New("unknown writer schema fingerprint")

// ErrNotSingleObject means the bytes lack the Avro single-object marker.
var ErrNotSingleObject = errors.New("not an Avro single-object message")

// NameOf returns the Avro full name of a record value (pointer or not).
func NameOf(rec any) (string, error) {
	switch rec.(type) {
	case *Span, Span:
		return NameSpan, nil
	case *Event, Event:
		return NameEvent, nil
	case *Heartbeat, Heartbeat:
		return NameHeartbeat, nil
	case *MetricPartial, MetricPartial:
		return NameMetricPartial, nil
	case *MetricPoint, MetricPoint:
		return NameMetricPoint, nil
	case *Alert, Alert:
		return NameAlert, nil
	}
	return "", fmt.Errorf("schemas: %T is not a Mercury record", rec)
}

// AppendBinary appends the bare Avro binary body of rec, encoded with its current schema.
func AppendBinary(dst []byte, rec any) ([]byte, error) {
	switch r := rec.(type) {
	case *Span:
		return AppendSpan(dst, r), nil
	case Span:
		return AppendSpan(dst, &r), nil
	case *MetricPartial:
		return AppendMetricPartial(dst, r), nil
	}
	name, err := NameOf(rec)
	if err != nil {
		return dst, err
	}
	return Current(name).Codec.BinaryFromNative(dst, toNative(rec))
}

// singleObjectMarker opens every single-object encoded message.
var singleObjectMarker = [2]byte{0xC3, 0x01}

// SingleObjectHeaderLen is the marker plus the 8-byte fingerprint.
const SingleObjectHeaderLen = 10

// AppendSingle appends rec in Avro single-object encoding: C3 01, the little-endian
// fingerprint of the writer schema, then the body. It is the Kafka message value.
func AppendSingle(dst []byte, rec any) ([]byte, error) {
	name, err := NameOf(rec)
	if err != nil {
		return dst, err
	}
	dst = AppendSingleHeader(dst, Current(name).Fingerprint)
	return AppendBinary(dst, rec)
}

// AppendSingleHeader appends the single-object header for a writer fingerprint; a body encoded
// with that schema may follow (the shipper re-frames spool records this way without decoding).
func AppendSingleHeader(dst []byte, fp uint64) []byte {
	dst = append(dst, singleObjectMarker[:]...)
	return binary.LittleEndian.AppendUint64(dst, fp)
}

// Marshal is AppendSingle into a new slice.
func Marshal(rec any) ([]byte, error) { return AppendSingle(nil, rec) }

// SingleFingerprint returns the writer fingerprint and the body of a single-object message.
func SingleFingerprint(msg []byte) (uint64, []byte, error) {
	if len(msg) < SingleObjectHeaderLen || msg[0] != singleObjectMarker[0] || msg[1] != singleObjectMarker[1] {
		return 0, nil, ErrNotSingleObject
	}
	return binary.LittleEndian.Uint64(msg[2:10]), msg[10:], nil
}

// Unmarshal decodes a single-object message into rec, resolving older writer schemas.
func Unmarshal(msg []byte, rec any) error {
	fp, body, err := SingleFingerprint(msg)
	if err != nil {
		return err
	}
	rest, err := DecodeBinary(fp, body, rec)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("schemas: %d trailing bytes after record", len(rest))
	}
	return nil
}

// DecodeBinary decodes one record body written with the schema fingerprinted fp into rec and
// returns the bytes after it.
func DecodeBinary(fp uint64, body []byte, rec any) ([]byte, error) {
	ws, ok := Lookup(fp)
	if !ok {
		return body, fmt.Errorf("schemas: %w %016x", ErrUnknownSchema, fp)
	}
	name, err := NameOf(rec)
	if err != nil {
		return body, err
	}
	if ws.Name != name {
		return body, fmt.Errorf("schemas: message holds %s, not %s", ws.Name, name)
	}
	if sp, ok := rec.(*Span); ok && fp == Current(NameSpan).Fingerprint {
		return DecodeSpan(body, sp)
	}
	if mp, ok := rec.(*MetricPartial); ok && fp == Current(NameMetricPartial).Fingerprint {
		return DecodeMetricPartial(body, mp)
	}
	native, rest, err := ws.Codec.NativeFromBinary(body)
	if err != nil {
		return body, fmt.Errorf("schemas: decode %s: %w", name, err)
	}
	if err := fromNative(native, rec); err != nil {
		return body, fmt.Errorf("schemas: decode %s: %w", name, err)
	}
	return rest, nil
}
