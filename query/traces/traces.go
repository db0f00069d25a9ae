// Package traces is the query service's trace room: search by business key, service,
// operation, time, duration, errors and dye, and a trace by id as a call tree.
package traces

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// Room serves the trace endpoints over a trace store.
type Room struct {
	Store *tracestore.Store
	Now   func() time.Time // nil: time.Now
}

// Register mounts GET /api/v1/traces and GET /api/v1/traces/{id}.
func (t *Room) Register(rt *api.Router) {
	rt.Handle("GET /api/v1/traces", t.search)
	rt.Handle("GET /api/v1/traces/{id}", t.get)
}

// TraceSummary is one search result.
type TraceSummary struct {
	TraceID       string            `json:"trace_id"`
	RootService   string            `json:"root_service"`
	RootOperation string            `json:"root_operation"`
	Start         time.Time         `json:"start"`
	DurationNano  int64             `json:"duration_nano"`
	SpanCount     int               `json:"span_count"`
	ErrorCount    int               `json:"error_count"`
	Services      []string          `json:"services"`
	BusinessKeys  map[string]string `json:"business_keys,omitempty"`
	Dyed          bool              `json:"dyed,omitempty"`
}

// SearchResult answers GET /api/v1/traces.
type SearchResult struct {
	Traces []TraceSummary `json:"traces"`
}

func (t *Room) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Room) search(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	q, err := ParseSearch(r.URL.Query(), t.now())
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	found, err := t.Store.FindTraces(ctx, q)
	if err != nil {
		return nil, StoreStatus(err), err
	}
	res := SearchResult{Traces: make([]TraceSummary, 0, len(found))}
	for _, f := range found {
		res.Traces = append(res.Traces, TraceSummary{
			TraceID: f.TraceID.String(), RootService: f.RootService, RootOperation: f.RootOperation, Start: f.Start.UTC(),
			DurationNano: int64(f.Duration), SpanCount: f.SpanCount, ErrorCount: f.ErrorCount, Services: f.Services,
			BusinessKeys: kvMap(f.BusinessKeys), Dyed: f.Dyed,
		})
	}
	return res, http.StatusOK, nil
}

func (t *Room) get(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	id, err := schemas.ParseTraceID(strings.ToLower(r.PathValue("id")))
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	spans, err := t.Store.Rows.GetTrace(ctx, id)
	if errors.Is(err, tracestore.ErrNotFound) {
		return nil, http.StatusNotFound, fmt.Errorf("trace %s not found", id)
	}
	if err != nil {
		return nil, StoreStatus(err), err
	}
	return BuildTree(id, spans), http.StatusOK, nil
}

// StoreStatus maps a store error to the status a client should see.
func StoreStatus(err error) int {
	switch {
	case errors.Is(err, tracestore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, tracestore.ErrInvalidQuery):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded), retry.IsRetryable(err):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
