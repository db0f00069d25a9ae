// Package esstore is the distributed trace index on Elasticsearch 8 (go-elasticsearch/v8):
// index template mercury-spans, one index per domain per day (mercury-spans-<domain>-
// <yyyy.MM.dd>; dyed spans in mercury-shadow-spans-...), one document per span with id =
// trace id hex + span id hex, business keys in a flattened (keyword) field, search as
// structured bool/filter DSL, retention by deleting daily indices.
//
// Each document also carries the Avro span body (not indexed), so the package implements Rows
// too and an Elasticsearch-only deployment works; Config.OmitSpans drops it when HBase holds
// the rows.
package esstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

var (
	_ tracestore.Index      = (*Store)(nil)
	_ tracestore.Rows       = (*Store)(nil)
	_ tracestore.Retention  = (*Store)(nil)
	_ tracestore.SpanWriter = (*Store)(nil)
)

// Index naming.
const (
	TemplateName = "mercury-spans"
	SpansPrefix  = "mercury-spans-"
	ShadowPrefix = "mercury-shadow-spans-"
	dayFormat    = "2006.01.02"
)

// Config configures a Store. Only Addresses is required.
type Config struct {
	Addresses          []string
	Username, Password string
	APIKey             string
	// Transport defaults to a fresh *http.Transport, closed by Close.
	Transport http.RoundTripper
	// Backoff retries whole requests and bulk items that failed with 429/5xx.
	Backoff retry.Backoff
	// Refresh is passed to the bulk API ("", "true", "wait_for"); tests against a real
	// cluster use "wait_for" to read their writes.
	Refresh string
	// Workers of each bulk call (default 2) and the flush threshold (default 5 MB).
	Workers, FlushBytes int
	// OmitSpans leaves the span body out of documents: the index only, rows elsewhere.
	OmitSpans bool
	// Shards of each daily index (default 1: per-domain daily indices are small).
	Shards int
}

// Store implements tracestore.Index, Rows, Retention and SpanWriter.
type Store struct {
	tracestore.RowDecoder
	cfg    Config
	client *elasticsearch.Client
	own    *http.Transport // closed by Close when we created it
}

// New builds the client and installs the index template (the first request, which is also
// where the client checks the X-Elastic-Product header).
func New(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Addresses) == 0 {
		return nil, retry.Permanent(errors.New("esstore: no addresses"))
	}
	if cfg.Backoff == (retry.Backoff{}) {
		cfg.Backoff = retry.StoreBackoff
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.FlushBytes <= 0 {
		cfg.FlushBytes = 5 << 20
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 1
	}
	s := &Store{cfg: cfg}
	tr := cfg.Transport
	if tr == nil {
		s.own = http.DefaultTransport.(*http.Transport).Clone()
		tr = s.own
	}
	client, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: cfg.Addresses, Username: cfg.Username, Password: cfg.Password, APIKey: cfg.APIKey,
		Transport: tr,
		// The transport retries whole requests; 429 is overload like 502-504.
		RetryOnStatus: []int{http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout},
		MaxRetries:    3,
		RetryBackoff:  func(attempt int) time.Duration { return time.Duration(attempt*attempt) * 20 * time.Millisecond },
	})
	if err != nil {
		return nil, retry.Permanent(fmt.Errorf("esstore: %w", err))
	}
	s.client = client
	if err := s.EnsureTemplate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases idle connections of the transport New created.
func (s *Store) Close() {
	if s.own != nil {
		s.own.CloseIdleConnections()
	}
}

// Template returns the index template body.
func (s *Store) Template() map[string]any {
	keyword := map[string]any{"type": "keyword", "ignore_above": 1024}
	return map[string]any{
		"index_patterns": []string{SpansPrefix + "*", ShadowPrefix + "*"},
		"priority":       100,
		"template": map[string]any{
			"settings": map[string]any{"number_of_shards": s.cfg.Shards},
			"mappings": map[string]any{
				// Spans carry arbitrary tags: unknown fields are kept in _source only, so a
				// noisy agent cannot explode the mapping.
				"dynamic": false,
				"properties": map[string]any{
					"trace_id": keyword, "span_id": keyword, "parent_span_id": keyword,
					"domain": keyword, "service": keyword, "operation": keyword, "kind": keyword,
					"host":            keyword,
					"start_unix_nano": map[string]any{"type": "long"},
					"start":           map[string]any{"type": "date", "format": "epoch_millis"},
					"duration_nano":   map[string]any{"type": "long"},
					"error":           map[string]any{"type": "boolean"},
					"error_type":      keyword,
					"events":          keyword, // an array of names: a term matches any
					"dyed":            map[string]any{"type": "boolean"},
					// One field for any number of business keys, each searchable as
					// bk.<key> with keyword semantics; long values are not indexed (a
					// Lucene term holds at most 32 KB).
					"bk":   map[string]any{"type": "flattened", "ignore_above": 1024},
					"span": map[string]any{"type": "binary"},
				},
			},
		},
	}
}

// EnsureTemplate installs or updates the index template.
func (s *Store) EnsureTemplate(ctx context.Context) error {
	body, _ := json.Marshal(s.Template())
	return s.call(ctx, "put template", func() esapi.Request {
		return esapi.IndicesPutIndexTemplateRequest{Name: TemplateName, Body: bytes.NewReader(body)}
	}, nil)
}

// call performs the request req builds (afresh per attempt: bodies are readers) with the
// shared backoff, decodes a 2xx body into out (if not nil) and
// classifies failures. ok lists non-2xx statuses to accept without decoding.
func (s *Store) call(ctx context.Context, what string, req func() esapi.Request, out any, ok ...int) error {
	return s.cfg.Backoff.Do(ctx, func() error {
		res, err := req().Do(ctx, s.client)
		if err != nil {
			return classifyTransport(ctx, what, err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return retry.Retryable(fmt.Errorf("esstore: %s: %w", what, err))
		}
		for _, code := range ok {
			if res.StatusCode == code {
				return nil
			}
		}
		if res.IsError() {
			return fmt.Errorf("esstore: %s: %w: %s", what, retry.StatusError(res.StatusCode, "elasticsearch"), errorReason(body))
		}
		if out == nil {
			return nil
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(out); err != nil {
			return retry.Permanent(fmt.Errorf("esstore: %s: decode: %w", what, err))
		}
		return nil
	})
}

// classifyTransport sorts client errors: the product check and bad configuration are
// permanent, network trouble is retryable.
func classifyTransport(ctx context.Context, what string, err error) error {
	err = fmt.Errorf("esstore: %s: %w", what, err)
	if ctx.Err() == nil && strings.Contains(err.Error(), "not Elasticsearch") {
		return retry.Permanent(err)
	}
	return retry.Retryable(err)
}

// errorReason extracts type and reason of an Elasticsearch error body.
func errorReason(body []byte) string {
	var e struct {
		Error struct{ Type, Reason string } `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Type != "" {
		return e.Error.Type + ": " + e.Error.Reason
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return string(body)
}

// IndexName is the daily index of a span.
func IndexName(domain string, startUnixNano int64, dyed bool) string {
	prefix := SpansPrefix
	if dyed {
		prefix = ShadowPrefix
	}
	return prefix + sanitizeDomain(domain) + "-" + tracestore.DayOf(startUnixNano).Format(dayFormat)
}

// sanitizeDomain keeps index names legal: lowercase letters, digits, '_' and '-'; everything
// else becomes '_', and the length is capped well under the 255-byte limit.
func sanitizeDomain(d string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(d) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 100 {
			break
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// doc is the indexed form of a span.
type doc struct {
	TraceID      string            `json:"trace_id"`
	SpanID       string            `json:"span_id"`
	ParentSpanID string            `json:"parent_span_id"`
	Domain       string            `json:"domain"`
	Service      string            `json:"service"`
	Operation    string            `json:"operation"`
	Kind         string            `json:"kind"`
	Host         string            `json:"host"`
	Start        int64             `json:"start_unix_nano"`
	StartMillis  int64             `json:"start"`
	Duration     int64             `json:"duration_nano"`
	Error        bool              `json:"error"`
	ErrorType    string            `json:"error_type,omitempty"`
	Events       []string          `json:"events,omitempty"` // event names, each once
	Dyed         bool              `json:"dyed"`
	BK           map[string]string `json:"bk,omitempty"`
	Span         string            `json:"span,omitempty"`
}

func (s *Store) docOf(sp *schemas.Span, buf []byte) doc {
	d := doc{
		TraceID: sp.TraceID.String(), SpanID: sp.SpanID.String(), ParentSpanID: sp.ParentSpanID.String(),
		Domain: sp.Domain, Service: sp.Service, Operation: sp.Operation, Kind: sp.Kind.String(), Host: sp.Host,
		Start: sp.StartUnixNano, StartMillis: sp.StartUnixNano / 1e6, Duration: sp.DurationNano,
		Error: tracestore.IsError(sp), ErrorType: sp.ErrorType, Dyed: sp.Dyed,
	}
	for _, ev := range sp.Events {
		if !slices.Contains(d.Events, ev.Name) {
			d.Events = append(d.Events, ev.Name)
		}
	}
	if len(sp.BusinessKeys) > 0 {
		d.BK = make(map[string]string, len(sp.BusinessKeys))
		for _, kv := range sp.BusinessKeys {
			// Elasticsearch rejects empty field names; such a key could not be searched.
			if strings.Trim(kv.Key, ".") != "" {
				d.BK[kv.Key] = kv.Value
			}
		}
	}
	if !s.cfg.OmitSpans {
		d.Span = base64.StdEncoding.EncodeToString(tracestore.AppendRow(buf[:0], sp))
	}
	return d
}

// IndexSpans writes one document per span.
func (s *Store) IndexSpans(ctx context.Context, spans []schemas.Span) error {
	return s.WriteSpans(ctx, spans)
}

// PutSpans is IndexSpans: the document is both the index entry and the row.
func (s *Store) PutSpans(ctx context.Context, spans []schemas.Span) error {
	return s.WriteSpans(ctx, spans)
}

// bulkItem is one prepared document.
type bulkItem struct {
	index, id string
	body      []byte
}

// WriteSpans bulk-indexes the spans. Items rejected with 429 or 5xx are sent again with
// backoff; any other item error (mapping conflict, malformed document) is permanent and
// returned at once, since a replay would fail the same way.
func (s *Store) WriteSpans(ctx context.Context, spans []schemas.Span) error {
	if len(spans) == 0 {
		return nil
	}
	items := make([]bulkItem, len(spans))
	var buf []byte
	for i := range spans {
		sp := &spans[i]
		body, err := json.Marshal(s.docOf(sp, buf))
		if err != nil {
			return retry.Permanent(fmt.Errorf("esstore: span %s/%s: %w", sp.TraceID, sp.SpanID, err))
		}
		items[i] = bulkItem{index: IndexName(sp.Domain, sp.StartUnixNano, sp.Dyed), id: sp.TraceID.String() + sp.SpanID.String(), body: body}
	}
	return s.cfg.Backoff.Do(ctx, func() error {
		failed, err := s.bulk(ctx, items)
		items = failed
		return err
	})
}

// bulk sends items through a BulkIndexer and returns those to retry. The indexer lives for
// one call: its workers stop in Close, so nothing outlives the call, and Close's return
// means every item has its outcome.
func (s *Store) bulk(ctx context.Context, items []bulkItem) ([]bulkItem, error) {
	var (
		mu        sync.Mutex
		done      = make([]bool, len(items))
		permanent error
		lastErr   error
	)
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client:     guard{s.client},
		NumWorkers: s.cfg.Workers,
		FlushBytes: s.cfg.FlushBytes,
		// Only Close flushes: no ticker-driven partial flushes.
		FlushInterval: time.Hour,
		Refresh:       s.cfg.Refresh,
		OnError: func(_ context.Context, err error) {
			mu.Lock()
			lastErr = err
			mu.Unlock()
		},
	})
	if err != nil {
		return items, retry.Permanent(fmt.Errorf("esstore: bulk indexer: %w", err))
	}
	for i := range items {
		i := i
		err := bi.Add(ctx, esutil.BulkIndexerItem{
			Action: "index", Index: items[i].index, DocumentID: items[i].id, Body: bytes.NewReader(items[i].body),
			OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
				mu.Lock()
				done[i] = true
				mu.Unlock()
			},
			OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, r esutil.BulkIndexerResponseItem, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					err = fmt.Errorf("item %s/%s: HTTP %d %s: %s", r.Index, r.DocumentID, r.Status, r.Error.Type, r.Error.Reason)
					if !retry.RetryableStatus(r.Status) {
						done[i] = true // retrying will not help
						permanent = errors.Join(permanent, err)
						return
					}
				}
				lastErr = err
			},
		})
		if err != nil {
			_ = bi.Close(context.WithoutCancel(ctx))
			return items, retry.Retryable(fmt.Errorf("esstore: bulk add: %w", err))
		}
	}
	if err := bi.Close(ctx); err != nil {
		return items, retry.Retryable(fmt.Errorf("esstore: bulk close: %w", err))
	}
	if permanent != nil {
		return nil, retry.Permanent(fmt.Errorf("esstore: bulk: %w", permanent))
	}
	var again []bulkItem
	for i, ok := range done {
		if !ok {
			again = append(again, items[i])
		}
	}
	if len(again) > 0 {
		// Items without any outcome (a short reply) count as failed too.
		return again, retry.Retryable(fmt.Errorf("esstore: bulk: %d of %d items not indexed: %v", len(again), len(items), lastErr))
	}
	return nil, nil
}

// guard protects the BulkIndexer from replies it cannot survive: a worker indexes its sent
// items by reply position and panics when a bulk reply lists more items than were sent. The
// guard counts the request's action lines and turns such a reply into an error, which the
// indexer reports through OnFailure for every item of the flush.
type guard struct{ next esapi.Transport }

func (g guard) Perform(req *http.Request) (*http.Response, error) {
	if req.Body == nil || !strings.HasSuffix(req.URL.Path, "/_bulk") {
		return g.next.Perform(req)
	}
	reqBody, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
	req.ContentLength = int64(len(reqBody))
	sent := bytes.Count(reqBody, []byte{'\n'}) / 2 // index actions: metadata line + document line
	res, err := g.next.Perform(req)
	if err != nil || res.StatusCode/100 != 2 {
		return res, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	var reply struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &reply); err != nil {
		return nil, fmt.Errorf("bulk reply: %w", err)
	}
	if len(reply.Items) > sent {
		return nil, fmt.Errorf("bulk reply lists %d items for %d sent", len(reply.Items), sent)
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res, nil
}
