package ship

import (
	"encoding/json"
	"fmt"

	"github.com/mercury-apm/mercury/schemas"
)

// The shipper forwards record bodies exactly as the agent wrote them (no decode, no
// re-encode). An OCF block is one byte string holding Count bodies back to back, so to cut it
// into Kafka messages we must know where each body ends. skipper walks the Avro binary
// encoding of a writer schema without building values: a few varint reads per field, no
// allocation. It also lifts the top-level fields the partition key is made of.

type avroKind uint8

const (
	kNull avroKind = iota
	kBool
	kInt // int and long: zig-zag varint
	kFloat
	kDouble
	kBytes // bytes and string
	kFixed
	kEnum
	kRecord
	kArray
	kMap
	kUnion
)

type avroNode struct {
	kind     avroKind
	size     int         // fixed
	fields   []*avroNode // record
	names    []string    // record field names
	elem     *avroNode   // array items, map values
	branches []*avroNode // union
}

// compileSchema turns a writer schema (JSON) into a skip tree.
func compileSchema(schemaJSON string) (*avroNode, error) {
	var v any
	if err := json.Unmarshal([]byte(schemaJSON), &v); err != nil {
		return nil, fmt.Errorf("schema json: %w", err)
	}
	named := map[string]*avroNode{}
	return compileNode(v, "", named)
}

func fullName(name, ns string) string {
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			return name
		}
	}
	if ns == "" {
		return name
	}
	return ns + "." + name
}

func compileNode(v any, ns string, named map[string]*avroNode) (*avroNode, error) {
	switch t := v.(type) {
	case string:
		switch t {
		case "null":
			return &avroNode{kind: kNull}, nil
		case "boolean":
			return &avroNode{kind: kBool}, nil
		case "int", "long":
			return &avroNode{kind: kInt}, nil
		case "float":
			return &avroNode{kind: kFloat}, nil
		case "double":
			return &avroNode{kind: kDouble}, nil
		case "bytes", "string":
			return &avroNode{kind: kBytes}, nil
		}
		if n, ok := named[fullName(t, ns)]; ok {
			return n, nil
		}
		if n, ok := named[t]; ok {
			return n, nil
		}
		return nil, fmt.Errorf("unknown type %q", t)
	case []any:
		n := &avroNode{kind: kUnion}
		for _, b := range t {
			c, err := compileNode(b, ns, named)
			if err != nil {
				return nil, err
			}
			n.branches = append(n.branches, c)
		}
		return n, nil
	case map[string]any:
		typ, _ := t["type"].(string)
		name, _ := t["name"].(string)
		if s, ok := t["namespace"].(string); ok {
			ns = s
		}
		switch typ {
		case "record", "error":
			n := &avroNode{kind: kRecord}
			fn := fullName(name, ns)
			named[fn] = n // before the fields: a record may refer to itself
			if i := lastDot(fn); i >= 0 {
				ns = fn[:i]
			}
			fields, _ := t["fields"].([]any)
			for _, f := range fields {
				fm, _ := f.(map[string]any)
				c, err := compileNode(fm["type"], ns, named)
				if err != nil {
					return nil, err
				}
				fname, _ := fm["name"].(string)
				n.fields = append(n.fields, c)
				n.names = append(n.names, fname)
			}
			return n, nil
		case "enum":
			n := &avroNode{kind: kEnum}
			named[fullName(name, ns)] = n
			return n, nil
		case "fixed":
			size, _ := t["size"].(float64)
			n := &avroNode{kind: kFixed, size: int(size)}
			named[fullName(name, ns)] = n
			return n, nil
		case "array":
			e, err := compileNode(t["items"], ns, named)
			return &avroNode{kind: kArray, elem: e}, err
		case "map":
			e, err := compileNode(t["values"], ns, named)
			return &avroNode{kind: kMap, elem: e}, err
		}
		// {"type": "long", "logicalType": ...} and the like.
		return compileNode(t["type"], ns, named)
	}
	return nil, fmt.Errorf("bad schema node %T", v)
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

var bytesNode = &avroNode{kind: kBytes}

var errShort = fmt.Errorf("%w: record runs past its block", schemas.ErrCorrupt)

func readVarint(b []byte, p int) (int64, int, error) {
	var u uint64
	var shift uint
	for {
		if p >= len(b) {
			return 0, p, errShort
		}
		c := b[p]
		p++
		u |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int64(u>>1) ^ -int64(u&1), p, nil
		}
		shift += 7
		if shift > 63 {
			return 0, p, fmt.Errorf("%w: varint overflow", schemas.ErrCorrupt)
		}
	}
}

func skipN(b []byte, p, n int) (int, error) {
	if n < 0 || n > len(b)-p {
		return p, errShort
	}
	return p + n, nil
}

// skip returns the position after the value of type n that starts at p.
func skip(n *avroNode, b []byte, p int) (int, error) {
	var err error
	switch n.kind {
	case kNull:
		return p, nil
	case kBool:
		return skipN(b, p, 1)
	case kInt, kEnum:
		_, p, err = readVarint(b, p)
		return p, err
	case kFloat:
		return skipN(b, p, 4)
	case kDouble:
		return skipN(b, p, 8)
	case kBytes:
		var l int64
		if l, p, err = readVarint(b, p); err != nil {
			return p, err
		}
		return skipN(b, p, int(l))
	case kFixed:
		return skipN(b, p, n.size)
	case kRecord:
		for _, f := range n.fields {
			if p, err = skip(f, b, p); err != nil {
				return p, err
			}
		}
		return p, nil
	case kUnion:
		var i int64
		if i, p, err = readVarint(b, p); err != nil {
			return p, err
		}
		if i < 0 || int(i) >= len(n.branches) {
			return p, fmt.Errorf("%w: union branch %d", schemas.ErrCorrupt, i)
		}
		return skip(n.branches[i], b, p)
	case kArray, kMap:
		for {
			var cnt int64
			if cnt, p, err = readVarint(b, p); err != nil {
				return p, err
			}
			if cnt == 0 {
				return p, nil
			}
			if cnt < 0 {
				// A negative count is followed by the block's byte size: jump over it.
				var size int64
				if size, p, err = readVarint(b, p); err != nil {
					return p, err
				}
				if p, err = skipN(b, p, int(size)); err != nil {
					return p, err
				}
				continue
			}
			// Every item takes at least a byte (map keys always do): a count beyond the bytes
			// left is corruption, caught before a long loop.
			if cnt > int64(len(b)-p) && (n.kind == kMap || n.elem.kind != kNull) {
				return p, errShort
			}
			for ; cnt > 0; cnt-- {
				if n.kind == kMap {
					if p, err = skip(bytesNode, b, p); err != nil {
						return p, err
					}
				}
				if p, err = skip(n.elem, b, p); err != nil {
					return p, err
				}
			}
		}
	}
	return p, fmt.Errorf("unknown avro kind %d", n.kind)
}

// splitter cuts a block's data into record bodies and lifts up to two top-level key fields.
type splitter struct {
	root   *avroNode
	keyIdx [2]int // top-level field index per key slot, -1 if absent
	// prefix > 0: the only key is a fixed of this size that opens the record (Span.trace_id),
	// so keys() slices it without walking the record.
	prefix int
}

func newSplitter(schemaJSON string, keyFields ...string) (*splitter, error) {
	root, err := compileSchema(schemaJSON)
	if err != nil {
		return nil, err
	}
	if root.kind != kRecord {
		return nil, fmt.Errorf("writer schema is not a record")
	}
	s := &splitter{root: root, keyIdx: [2]int{-1, -1}}
	for slot, k := range keyFields {
		for i, name := range root.names {
			if name == k {
				s.keyIdx[slot] = i
			}
		}
	}
	if s.keyIdx[0] == 0 && s.keyIdx[1] < 0 && root.fields[0].kind == kFixed {
		s.prefix = root.fields[0].size
	}
	return s, nil
}

// keys lifts the key fields of one record body.
func (s *splitter) keys(rec []byte) (k0, k1 []byte, err error) {
	if s.prefix > 0 {
		if len(rec) < s.prefix {
			return nil, nil, errShort
		}
		return rec[:s.prefix], nil, nil
	}
	_, k0, k1, err = s.next(rec, 0)
	return k0, k1, err
}

// next returns the end of the record starting at p and the raw key fields (a string's bytes,
// a fixed's bytes; nil when the schema lacks the field).
func (s *splitter) next(b []byte, p int) (end int, k0, k1 []byte, err error) {
	for i, f := range s.root.fields {
		start := p
		if p, err = skip(f, b, p); err != nil {
			return p, nil, nil, err
		}
		if i != s.keyIdx[0] && i != s.keyIdx[1] {
			continue
		}
		v := b[start:p]
		if f.kind == kBytes {
			_, off, _ := readVarint(b, start)
			v = b[off:p]
		}
		if i == s.keyIdx[0] {
			k0 = v
		} else {
			k1 = v
		}
	}
	return p, k0, k1, nil
}
