// Package schemas holds Mercury's wire formats: the Avro schemas (the source of truth, embedded
// from avro/*.avsc), their Go types, the Kafka message codec (Avro single-object encoding with a
// fingerprint registry, so records from older writers still decode) and Object Container File
// helpers for the agent's spool.
//
// github.com/linkedin/goavro/v2 is the reference codec for every record. Span, the one record on
// the hot path, also has a schema-specific codec (span_codec.go) that tests prove byte-identical
// to goavro.
package schemas
