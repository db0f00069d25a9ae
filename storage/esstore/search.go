package esstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// M is a JSON object of the query DSL. Queries are built from these values and encoded with
// encoding/json, so user text only ever lands in JSON string values of term filters: never in
// a query string, never in a field name except bk.<key>, which Validate bounds.
type M = map[string]any

// maxPatternDays bounds per-day index patterns; longer ranges use one wildcard per prefix.
const maxPatternDays = 31

// SearchBody builds the request body of Search: every condition a filter (no scoring), one
// hit per trace (collapse on trace_id), newest first.
func SearchBody(q *tracestore.Query) M {
	filters := []M{}
	for _, kv := range q.BusinessKeys {
		filters = append(filters, M{"term": M{"bk." + kv.Key: kv.Value}})
	}
	if q.Service != "" {
		filters = append(filters, M{"term": M{"service": q.Service}})
	}
	if q.Operation != "" {
		filters = append(filters, M{"term": M{"operation": q.Operation}})
	}
	if q.ErrorType != "" {
		filters = append(filters, M{"term": M{"error_type": q.ErrorType}})
	}
	if q.Event != "" {
		filters = append(filters, M{"term": M{"events": q.Event}})
	}
	if !q.Start.IsZero() || !q.End.IsZero() {
		r := M{}
		if !q.Start.IsZero() {
			r["gte"] = q.StartNano()
		}
		if !q.End.IsZero() {
			r["lte"] = q.EndNano()
		}
		filters = append(filters, M{"range": M{"start_unix_nano": r}})
	}
	if q.MinDuration > 0 || q.MaxDuration > 0 {
		r := M{}
		if q.MinDuration > 0 {
			r["gte"] = int64(q.MinDuration)
		}
		if q.MaxDuration > 0 {
			r["lte"] = int64(q.MaxDuration)
		}
		filters = append(filters, M{"range": M{"duration_nano": r}})
	}
	if q.ErrorsOnly {
		filters = append(filters, M{"term": M{"error": true}})
	}
	return M{
		"size":             q.EffectiveLimit(),
		"query":            M{"bool": M{"filter": filters}},
		"sort":             []M{{"start_unix_nano": M{"order": "desc"}}},
		"collapse":         M{"field": "trace_id"},
		"_source":          []string{"trace_id", "start_unix_nano", "dyed"},
		"track_total_hits": false,
	}
}

// patterns returns the indices a query may touch: the production and/or shadow prefix, per
// day when the range is short so Elasticsearch skips the other days' shards.
func patterns(q *tracestore.Query) []string {
	var prefixes []string
	if q.Dyed != tracestore.DyedOnly {
		prefixes = append(prefixes, SpansPrefix)
	}
	if q.Dyed != tracestore.DyedExclude {
		prefixes = append(prefixes, ShadowPrefix)
	}
	var out []string
	if !q.Start.IsZero() && !q.End.IsZero() {
		first, last := tracestore.DayOf(q.StartNano()), tracestore.DayOf(q.EndNano())
		if days := int(last.Sub(first)/(24*time.Hour)) + 1; days <= maxPatternDays {
			for _, p := range prefixes {
				for d := first; !d.After(last); d = d.Add(24 * time.Hour) {
					out = append(out, p+"*-"+d.Format(dayFormat))
				}
			}
			return out
		}
	}
	for _, p := range prefixes {
		out = append(out, p+"*")
	}
	return out
}

type searchReply struct {
	Hits struct {
		Hits []struct {
			Source json.RawMessage `json:"_source"`
			Sort   []any           `json:"sort"`
		} `json:"hits"`
	} `json:"hits"`
}

func (s *Store) search(ctx context.Context, what string, indices []string, body M, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return retry.Permanent(err)
	}
	yes := true
	// ignore_unavailable: a day or domain without data is no error (404
	// index_not_found_exception otherwise), nor is a wildcard matching nothing.
	return s.call(ctx, what, func() esapi.Request {
		return esapi.SearchRequest{Index: indices, Body: bytes.NewReader(b), IgnoreUnavailable: &yes, AllowNoIndices: &yes}
	}, out)
}

// Search returns the newest traces with a span matching q.
func (s *Store) Search(ctx context.Context, q tracestore.Query) ([]tracestore.TraceRef, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	var reply searchReply
	if err := s.search(ctx, "search", patterns(&q), SearchBody(&q), &reply); err != nil {
		return nil, err
	}
	refs := make([]tracestore.TraceRef, 0, len(reply.Hits.Hits))
	for _, h := range reply.Hits.Hits {
		var src struct {
			TraceID string      `json:"trace_id"`
			Start   json.Number `json:"start_unix_nano"`
			Dyed    bool        `json:"dyed"`
		}
		if err := json.Unmarshal(h.Source, &src); err != nil {
			return nil, retry.Permanent(fmt.Errorf("esstore: hit: %w", err))
		}
		id, err := schemas.ParseTraceID(src.TraceID)
		if err != nil {
			return nil, retry.Permanent(fmt.Errorf("esstore: hit: %w", err))
		}
		ns, _ := src.Start.Int64()
		refs = append(refs, tracestore.TraceRef{TraceID: id, Time: time.Unix(0, ns).UTC(), Dyed: src.Dyed})
	}
	return refs, nil
}

// TermsBody builds the request body of Services and Operations: no hits, one terms
// aggregation over field among the documents that pass filters, in key order.
func TermsBody(field string, filters []M) M {
	return M{
		"size":             0,
		"track_total_hits": false,
		"query":            M{"bool": M{"filter": filters}},
		"aggs":             M{"names": M{"terms": M{"field": field, "size": tracestore.MaxNames, "order": M{"_key": "asc"}}}},
	}
}

// Services aggregates the service field over the production indices.
func (s *Store) Services(ctx context.Context) ([]string, error) {
	return s.names(ctx, "services", TermsBody("service", []M{}))
}

// Operations aggregates the operation field of one service's production spans.
func (s *Store) Operations(ctx context.Context, service string) ([]string, error) {
	return s.names(ctx, "operations", TermsBody("operation", []M{{"term": M{"service": service}}}))
}

func (s *Store) names(ctx context.Context, what string, body M) ([]string, error) {
	var reply struct {
		Aggregations struct {
			Names struct {
				Buckets []struct {
					Key string `json:"key"`
				} `json:"buckets"`
			} `json:"names"`
		} `json:"aggregations"`
	}
	if err := s.search(ctx, what, []string{SpansPrefix + "*"}, body, &reply); err != nil {
		return nil, err
	}
	out := make([]string, len(reply.Aggregations.Names.Buckets))
	for i, b := range reply.Aggregations.Names.Buckets {
		out[i] = b.Key
	}
	return out, nil
}

// pageSize of GetTraces; Elasticsearch caps from+size at 10,000 by default.
const pageSize = 10000

// GetTraces fetches all spans of the traces with one terms query over every span index,
// paging with search_after on (trace_id, span_id), which is unique per document.
func (s *Store) GetTraces(ctx context.Context, ids []tracestore.TraceID) (map[tracestore.TraceID][]schemas.Span, error) {
	out := map[tracestore.TraceID][]schemas.Span{}
	if len(ids) == 0 {
		return out, nil
	}
	if s.cfg.OmitSpans {
		return nil, retry.Permanent(fmt.Errorf("esstore: spans are not stored (OmitSpans)"))
	}
	hexIDs := make([]string, len(ids))
	for i, id := range ids {
		hexIDs[i] = id.String()
	}
	body := M{
		"size":             pageSize,
		"query":            M{"bool": M{"filter": []M{{"terms": M{"trace_id": hexIDs}}}}},
		"sort":             []M{{"trace_id": M{"order": "asc"}}, {"span_id": M{"order": "asc"}}},
		"_source":          []string{"span"},
		"track_total_hits": false,
	}
	for {
		var reply searchReply
		if err := s.search(ctx, "get traces", []string{SpansPrefix + "*", ShadowPrefix + "*"}, body, &reply); err != nil {
			return nil, err
		}
		hits := reply.Hits.Hits
		for _, h := range hits {
			var src struct {
				Span string `json:"span"`
			}
			if err := json.Unmarshal(h.Source, &src); err != nil {
				return nil, retry.Permanent(fmt.Errorf("esstore: hit: %w", err))
			}
			raw, err := base64.StdEncoding.DecodeString(src.Span)
			var sp schemas.Span
			if err != nil {
				s.Skip()
				continue
			}
			if !s.DecodeRow(raw, &sp) {
				continue
			}
			out[sp.TraceID] = append(out[sp.TraceID], sp)
		}
		if len(hits) < pageSize {
			return out, nil
		}
		body["search_after"] = hits[len(hits)-1].Sort
	}
}

// GetTrace fetches one trace.
func (s *Store) GetTrace(ctx context.Context, id tracestore.TraceID) ([]schemas.Span, error) {
	m, err := s.GetTraces(ctx, []tracestore.TraceID{id})
	if err != nil {
		return nil, err
	}
	if len(m[id]) == 0 {
		return nil, fmt.Errorf("esstore: trace %s: %w", id, tracestore.ErrNotFound)
	}
	return m[id], nil
}

// DropBefore deletes the daily indices (production and shadow, every domain) of days that
// ended at or before cutoff. Indices are named explicitly: clusters refuse wildcard deletes
// (action.destructive_requires_name).
func (s *Store) DropBefore(ctx context.Context, cutoff time.Time) error {
	var rows []struct {
		Index string `json:"index"`
	}
	req := func() esapi.Request {
		return esapi.CatIndicesRequest{Index: []string{SpansPrefix + "*", ShadowPrefix + "*"}, Format: "json", H: []string{"index"}}
	}
	if err := s.call(ctx, "list indices", req, &rows); err != nil {
		return err
	}
	var old []string
	for _, r := range rows {
		i := strings.LastIndexByte(r.Index, '-')
		day, err := time.Parse(dayFormat, r.Index[i+1:])
		if err != nil || day.Add(24*time.Hour).After(cutoff) {
			continue
		}
		old = append(old, r.Index)
	}
	yes := true
	for start := 0; start < len(old); start += 50 { // keep URLs short
		chunk := old[start:min(start+50, len(old))]
		req := func() esapi.Request { return esapi.IndicesDeleteRequest{Index: chunk, IgnoreUnavailable: &yes} }
		if err := s.call(ctx, "delete indices", req, nil, http.StatusNotFound); err != nil {
			return err
		}
	}
	return nil
}

// countPage is the composite aggregation's page of CountSpans: well under the default
// search.max_buckets (65,536).
const countPage = 10000

// CountBody builds the request body of CountSpans: no hits, a composite aggregation over
// (service, minute of start) among the spans starting in [from, to), one page after after
// (nil: the first). The minute comes from the millisecond date field start, so bucket
// edges are exact (a histogram over the nanosecond long would round through a double).
func CountBody(from, to time.Time, after M) M {
	comp := M{
		"size": countPage,
		"sources": []M{
			{"service": M{"terms": M{"field": "service"}}},
			{"minute": M{"date_histogram": M{"field": "start", "fixed_interval": "1m"}}},
		},
	}
	if after != nil {
		comp["after"] = after
	}
	return M{
		"size":             0,
		"track_total_hits": false,
		"query":            M{"bool": M{"filter": []M{{"range": M{"start_unix_nano": M{"gte": from.UnixNano(), "lt": to.UnixNano()}}}}}},
		"aggs":             M{"counts": M{"composite": comp}},
	}
}

// CountSpans pages through the composite aggregation of production and shadow indices.
func (s *Store) CountSpans(ctx context.Context, from, to time.Time) ([]tracestore.SpanCount, error) {
	if err := tracestore.CheckCountRange(from, to); err != nil {
		return nil, err
	}
	indices := patterns(&tracestore.Query{Start: from, End: to.Add(-time.Nanosecond), Dyed: tracestore.DyedInclude})
	var out []tracestore.SpanCount
	var after M
	for {
		var reply struct {
			Aggregations struct {
				Counts struct {
					AfterKey M `json:"after_key"`
					Buckets  []struct {
						Key struct {
							Service string      `json:"service"`
							Minute  json.Number `json:"minute"`
						} `json:"key"`
						DocCount int64 `json:"doc_count"`
					} `json:"buckets"`
				} `json:"counts"`
			} `json:"aggregations"`
		}
		if err := s.search(ctx, "count spans", indices, CountBody(from, to, after), &reply); err != nil {
			return nil, err
		}
		c := reply.Aggregations.Counts
		for _, b := range c.Buckets {
			ms, err := b.Key.Minute.Int64()
			if err != nil {
				return nil, retry.Permanent(fmt.Errorf("esstore: count bucket minute %q: %w", b.Key.Minute, err))
			}
			out = append(out, tracestore.SpanCount{Service: b.Key.Service, Minute: ms / 1000, Spans: b.DocCount})
		}
		if len(c.Buckets) == 0 || c.AfterKey == nil {
			return out, nil
		}
		after = c.AfterKey
	}
}
