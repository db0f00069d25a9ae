// Package jaeger is the query service's Jaeger room: the HTTP API of Jaeger's query service
// (/api/services, /api/services/{service}/operations, /api/traces, /api/traces/{id}) in
// Jaeger's JSON shape, over Mercury's trace store, so Grafana's Jaeger data source and the
// Jaeger UI browse Mercury's traces unchanged.
//
// Search tags are business keys: the index holds business keys, not every tag, so
// tags={"order_id":"42"} finds the spans whose business key order_id is 42. The tag error=true
// asks for failed spans only.
package jaeger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/query/traces"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// DefaultLimit is Jaeger's default number of traces per search.
const DefaultLimit = 100

// Room serves the Jaeger endpoints over a trace store.
type Room struct {
	Store  *tracestore.Store
	Logger *slog.Logger     // nil: slog.Default
	Now    func() time.Time // nil: time.Now
}

// Register mounts the four endpoints under /api.
func (j *Room) Register(rt *api.Router) {
	rt.Handle("GET /api/services", j.services)
	rt.Handle("GET /api/services/{service}/operations", j.operations)
	rt.Handle("GET /api/traces", j.search)
	rt.Handle("GET /api/traces/{id}", j.trace)
}

const timeout = 10 * time.Second

// fail answers in Jaeger's error shape: data null, the message under errors.
func (j *Room) fail(code int, err error) (any, int, error) {
	if code >= 500 {
		log := j.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Error("jaeger API", "err", err)
	}
	return Response{Errors: []Error{{Code: code, Msg: err.Error()}}}, code, nil
}

func (j *Room) services(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	if err := api.NewParams(r.URL.Query()).Err(); err != nil {
		return j.fail(http.StatusBadRequest, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	names, err := j.Store.Index.Services(ctx)
	if err != nil {
		return j.fail(traces.StoreStatus(err), err)
	}
	return list(names), http.StatusOK, nil
}

func (j *Room) operations(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	service := r.PathValue("service")
	p := api.NewParams(r.URL.Query())
	if err := (&tracestore.Query{Service: service}).Validate(); err != nil {
		p.Bad("service: %v", err)
	}
	if err := p.Err(); err != nil {
		return j.fail(http.StatusBadRequest, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	names, err := j.Store.Index.Operations(ctx, service)
	if err != nil {
		return j.fail(traces.StoreStatus(err), err)
	}
	return list(names), http.StatusOK, nil
}

func list(names []string) Response {
	if names == nil {
		names = []string{}
	}
	return Response{Data: names, Total: len(names)}
}

// Search is a parsed /api/traces request: trace ids (fetched as they are) or a query.
type Search struct {
	TraceIDs []tracestore.TraceID
	Query    tracestore.Query
}

// ParseSearch reads Jaeger's search parameters: service, operation, tags (a JSON object) and
// tag (key:value, repeated), start and end in Unix microseconds, lookback (1h, 2d, or
// "custom": start and end say it; without start, the search looks back that far from end or
// now, by default traces.DefaultLookback), minDuration and maxDuration (Go durations), limit, and
// traceID (repeated; the other conditions are then ignored, as Jaeger does).
func ParseSearch(v url.Values, now time.Time) (Search, error) {
	p := api.NewParams(v, "service", "operation", "tags", "tag", "start", "end", "lookback", "minDuration", "maxDuration", "limit", "traceID")
	var s Search
	for _, id := range p.Strings("traceID") {
		if tid, err := parseTraceID(id); err != nil {
			p.Bad("traceID: %v", err)
		} else {
			s.TraceIDs = append(s.TraceIDs, tid)
		}
	}
	q := &s.Query
	q.Service, q.Operation = p.String("service"), p.String("operation")
	tags := map[string]string{}
	for _, t := range p.Strings("tags") {
		if t == "" { // forms send the empty field
			continue
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(t), &m); err != nil {
			p.Bad("tags %q: want a JSON object of strings, such as {\"order_id\":\"42\"}", t)
		}
		for k, v := range m {
			tags[k] = v
		}
	}
	for _, t := range p.Strings("tag") {
		k, v, ok := strings.Cut(t, ":")
		if !ok || k == "" {
			p.Bad("tag %q: want key:value", t)
			continue
		}
		tags[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if k == "error" {
			if tags[k] != "true" {
				p.Bad("tag error=%s: only error=true can be searched", tags[k])
			}
			q.ErrorsOnly = true
			continue
		}
		q.BusinessKeys = append(q.BusinessKeys, schemas.KV{Key: k, Value: tags[k]})
	}
	q.Start, q.End = micros(p, "start"), micros(p, "end")
	if d := lookback(p); q.Start.IsZero() {
		if d == 0 {
			d = traces.DefaultLookback // as Mercury's own search
		}
		end := now
		if !q.End.IsZero() {
			end = q.End
		}
		q.Start = end.Add(-d)
	}
	q.MinDuration, q.MaxDuration = p.Duration("minDuration", false), p.Duration("maxDuration", false)
	q.Limit = p.Int("limit", DefaultLimit, 0, tracestore.MaxLimit)
	if q.Limit == 0 {
		q.Limit = DefaultLimit
	}
	if err := p.Err(); err != nil {
		return s, err
	}
	if len(s.TraceIDs) > 0 {
		return s, nil
	}
	return s, q.Validate()
}

// micros parses Unix microseconds; the zero time when absent.
func micros(p *api.Params, name string) time.Time {
	s := p.String(name)
	if s == "" {
		return time.Time{}
	}
	us, err := strconv.ParseInt(s, 10, 64)
	// Span times are int64 nanoseconds: years 1678 to 2262.
	if err != nil || us < -(1<<63-1)/1000 || us > (1<<63-1)/1000 {
		p.Bad("%s %q: want Unix microseconds (years 1678-2262)", name, s)
		return time.Time{}
	}
	return time.UnixMicro(us)
}

// lookback parses the Jaeger UI's lookback: a Go duration or whole days ("2d"); "custom" and
// absent are 0.
func lookback(p *api.Params) time.Duration {
	s := p.String("lookback")
	if s == "" || s == "custom" {
		return 0
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 && n <= 366 {
			return time.Duration(n) * 24 * time.Hour
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d
	}
	p.Bad("lookback %q: want a duration such as 1h or 2d, or custom", s)
	return 0
}

// parseTraceID reads 1 to 32 hex digits, as Jaeger does: shorter ids (64-bit ones from old
// tracers) are the low bytes.
func parseTraceID(s string) (tracestore.TraceID, error) {
	if len(s) == 0 || len(s) > 32 {
		return tracestore.TraceID{}, fmt.Errorf("trace id %q: want 1 to 32 hex digits", s)
	}
	return schemas.ParseTraceID(strings.Repeat("0", 32-len(s)) + strings.ToLower(s))
}

func (j *Room) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}

func (j *Room) search(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	s, err := ParseSearch(r.URL.Query(), j.now())
	if err != nil {
		return j.fail(http.StatusBadRequest, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res := Response{Data: []Trace{}}
	var out []Trace
	if len(s.TraceIDs) > 0 {
		found, err := j.Store.Rows.GetTraces(ctx, s.TraceIDs)
		if err != nil {
			return j.fail(traces.StoreStatus(err), err)
		}
		for _, id := range s.TraceIDs {
			if spans := found[id]; len(spans) > 0 {
				out = append(out, FromSpans(id, spans))
			} else {
				res.Errors = append(res.Errors, Error{Msg: "trace not found", TraceID: id.String()})
			}
		}
	} else {
		found, err := j.Store.SearchTraces(ctx, s.Query)
		if err != nil {
			return j.fail(traces.StoreStatus(err), err)
		}
		for _, f := range found {
			out = append(out, FromSpans(f.Ref.TraceID, f.Spans))
		}
	}
	if out != nil {
		res.Data = out
	}
	res.Total = len(out)
	return res, http.StatusOK, nil
}

func (j *Room) trace(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	// start and end (µs) narrow Jaeger's own storage lookups; a trace id is unique here, so
	// they are checked and otherwise not needed.
	p := api.NewParams(r.URL.Query(), "start", "end")
	micros(p, "start")
	micros(p, "end")
	id, err := parseTraceID(r.PathValue("id"))
	if err != nil {
		p.Bad("%v", err)
	}
	if err := p.Err(); err != nil {
		return j.fail(http.StatusBadRequest, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	spans, err := j.Store.Rows.GetTrace(ctx, id)
	if errors.Is(err, tracestore.ErrNotFound) {
		return j.fail(http.StatusNotFound, errors.New("trace not found"))
	}
	if err != nil {
		return j.fail(traces.StoreStatus(err), err)
	}
	return Response{Data: []Trace{FromSpans(id, spans)}, Total: 1}, http.StatusOK, nil
}
