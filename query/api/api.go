// Package api is the plumbing every room of the query service shares: handlers that return
// (body, status, error) and become JSON with one error shape, request metrics, the admin
// token check, and one parameter parser, so every endpoint rejects bad input the same way.
package api

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Error is every error body: {"error": "..."}.
type Error struct {
	Error string `json:"error"`
}

// HandlerFunc returns the body to encode as JSON (nil: none), the status, or an error that
// becomes {"error": ...} with the status (500 when the status is below 400).
type HandlerFunc func(w http.ResponseWriter, r *http.Request) (any, int, error)

// Router mounts handlers on a mux with request metrics and the admin check.
type Router struct {
	mux        *http.ServeMux
	log        *slog.Logger
	adminToken string
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
}

// NewRouter registers the request metrics on reg. An empty adminToken disables admin
// endpoints (403).
func NewRouter(mux *http.ServeMux, reg prometheus.Registerer, log *slog.Logger, adminToken string) (*Router, error) {
	r := &Router{mux: mux, log: log, adminToken: adminToken,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mercury_query_requests_total", Help: "API requests by route and status code."}, []string{"route", "code"}),
		latency:  prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mercury_query_request_seconds", Help: "API latency by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{r.requests, r.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Mux is the underlying mux, for handlers that are not JSON (the UI's files).
func (rt *Router) Mux() *http.ServeMux { return rt.mux }

// Handle mounts h at pattern ("GET /api/v1/x").
func (rt *Router) Handle(pattern string, h HandlerFunc) {
	route := pattern[strings.IndexByte(pattern, ' ')+1:]
	rt.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		body, code, err := h(w, r)
		if err != nil {
			if code < 400 {
				code = http.StatusInternalServerError
			}
			if code >= 500 {
				rt.log.Error("query API", "route", route, "err", err)
			}
			body = Error{err.Error()}
		}
		var buf bytes.Buffer
		if body != nil {
			// Encode before the status line: a value JSON cannot hold (a NaN from a hostile
			// span, say) must become a 500 with a message, not a 200 with half a body.
			if jerr := json.NewEncoder(&buf).Encode(body); jerr != nil {
				rt.log.Error("query API: encode", "route", route, "err", jerr)
				code, buf = http.StatusInternalServerError, bytes.Buffer{}
				json.NewEncoder(&buf).Encode(Error{"response not representable as JSON: " + jerr.Error()})
			}
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(code)
		w.Write(buf.Bytes())
		rt.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		rt.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// Admin wraps h so it runs only with `Authorization: Bearer <admin token>`.
func (rt *Router) Admin(h HandlerFunc) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		if rt.adminToken == "" {
			return nil, http.StatusForbidden, errors.New("admin endpoints are disabled: start the query service with an admin token")
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(rt.adminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mercury"`)
			return nil, http.StatusUnauthorized, errors.New("admin token required")
		}
		return h(w, r)
	}
}

// DecodeJSON reads a JSON body of at most limit bytes into v, refusing unknown fields.
func DecodeJSON(r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("body: " + err.Error())
	}
	return nil
}

// Info logs a change made through the API (a config written, an alert acknowledged).
func (rt *Router) Info(msg string, args ...any) { rt.log.Info(msg, args...) }
