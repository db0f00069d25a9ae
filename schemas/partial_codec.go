package schemas

// The schema-specific MetricPartial codec: phase 1 emits and phase 2 reads a partial per
// series and window, up to hundreds of thousands per minute in a backlog, where goavro's
// map-based API costs microseconds each. TestPartialCodecMatchesGoavro and FuzzPartialCodec
// prove it identical to goavro for the current MetricPartial schema.

// AppendMetricPartial appends the Avro binary body of p.
func AppendMetricPartial(dst []byte, p *MetricPartial) []byte {
	dst = appendString(dst, p.SeriesID)
	dst = appendString(dst, p.Domain)
	dst = appendString(dst, p.Service)
	dst = appendString(dst, p.Operation)
	dst = appendLong(dst, int64(p.Kind))
	dst = appendString(dst, p.Peer)
	dst = appendString(dst, p.Host)
	dst = appendBool(dst, p.Dyed)
	dst = appendLong(dst, p.WindowStartUnixMilli)
	dst = appendLong(dst, int64(p.WindowMillis))
	dst = appendLong(dst, p.CountUnits)
	dst = appendLong(dst, p.ErrorUnits)
	dst = appendBytes(dst, p.SumUnits)
	dst = appendLong(dst, p.MinNano)
	dst = appendLong(dst, p.MaxNano)
	dst = appendBytes(dst, p.Sketch)
	dst = appendLong(dst, int64(p.SketchSchema))
	dst = appendLong(dst, int64(p.SourcePartition))
	dst = appendLong(dst, p.FirstOffset)
	return appendLong(dst, p.LastOffset)
}

func appendBytes(dst, b []byte) []byte {
	dst = appendLong(dst, int64(len(b)))
	return append(dst, b...)
}

// DecodeMetricPartial decodes one MetricPartial body (current schema) into p, reusing its
// byte slices, and returns the bytes after it.
func DecodeMetricPartial(b []byte, p *MetricPartial) ([]byte, error) {
	d := decoder{b: b}
	p.SeriesID = d.string()
	p.Domain = d.string()
	p.Service = d.string()
	p.Operation = d.string()
	p.Kind = SpanKind(d.enum(len(spanKindSymbols)))
	p.Peer = d.string()
	p.Host = d.string()
	p.Dyed = d.bool()
	p.WindowStartUnixMilli = d.long()
	p.WindowMillis = d.int()
	p.CountUnits = d.long()
	p.ErrorUnits = d.long()
	p.SumUnits = d.bytes(p.SumUnits[:0])
	p.MinNano = d.long()
	p.MaxNano = d.long()
	p.Sketch = d.bytes(p.Sketch[:0])
	p.SketchSchema = d.int()
	p.SourcePartition = d.int()
	p.FirstOffset = d.long()
	p.LastOffset = d.long()
	if d.err != nil {
		return b, d.err
	}
	return d.b, nil
}

func (d *decoder) bytes(dst []byte) []byte {
	n := d.long()
	if n < 0 || n > int64(len(d.b)) {
		d.fail("bytes length out of range")
		return dst
	}
	if dst == nil {
		dst = []byte{} // as goavro decodes empty bytes
	}
	dst = append(dst, d.b[:n]...)
	d.b = d.b[n:]
	return dst
}
