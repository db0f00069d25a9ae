package tracestore

import (
	"sync/atomic"

	"github.com/mercury-apm/mercury/schemas"
)

// Rows are stored in Avro single-object encoding: the writer schema's fingerprint travels with
// every stored span, so spans written before a schema change still decode after it (through
// the schemas registry), as DESIGN.md asks of everything Mercury keeps.

// AppendRow appends the stored form of s.
func AppendRow(dst []byte, s *schemas.Span) []byte {
	dst = schemas.AppendSingleHeader(dst, schemas.Current(schemas.NameSpan).Fingerprint)
	return schemas.AppendSpan(dst, s)
}

// RowDecoder decodes stored spans for one backend and counts the ones its readers skipped
// because they did not decode (damaged, or written by a schema this build does not know):
// one bad row must not hide the rest of its trace or fail a whole search page, and the count
// tells an operator it happened. Backends embed it.
type RowDecoder struct{ undecodable atomic.Int64 }

// DecodeRow decodes a stored span. ok is false (and the row counted) when it does not decode.
func (d *RowDecoder) DecodeRow(b []byte, s *schemas.Span) (ok bool) {
	if err := schemas.Unmarshal(b, s); err != nil {
		d.undecodable.Add(1)
		return false
	}
	return true
}

// Skip counts a row that could not even be taken out of its envelope.
func (d *RowDecoder) Skip() { d.undecodable.Add(1) }

// Undecodable is the number of rows skipped so far.
func (d *RowDecoder) Undecodable() int64 { return d.undecodable.Load() }
