// Package prom is the Prometheus HTTP API over Mercury's minute points: /api/v1/query,
// query_range, labels, label values and series, in Prometheus's JSON shape, evaluated by
// Prometheus's own PromQL engine over a storage.Queryable backed by the metric store. So
// Grafana's Prometheus data source works unchanged, histogram_quantile included
// (docs/grafana.md lists the metric names).
package prom

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"

	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// maxPoints bounds a range query's steps, as Prometheus does.
const maxPoints = 11000

// Room mounts the API.
type Room struct {
	Store metricstore.Store
	// Now is the default evaluation time (time.Now when nil).
	Now func() time.Time
	// Logger receives the engine's complaints (discarded when nil).
	Logger *slog.Logger

	engine *promql.Engine
	parser parser.Parser
}

// Register mounts the endpoints, GET and POST (form) alike.
func (r *Room) Register(rt *api.Router) {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	r.parser = parser.NewParser(parser.Options{})
	r.engine = promql.NewEngine(promql.EngineOpts{Logger: r.Logger, MaxSamples: 50_000_000, Timeout: 2 * time.Minute,
		LookbackDelta: 5 * time.Minute, EnableAtModifier: true, EnableNegativeOffset: true, Parser: r.parser})
	for path, h := range map[string]api.HandlerFunc{
		"/api/v1/query": r.query, "/api/v1/query_range": r.queryRange, "/api/v1/labels": r.labels,
		"/api/v1/label/{name}/values": r.labelValues, "/api/v1/series": r.series,
	} {
		rt.Handle("GET "+path, h)
		rt.Handle("POST "+path, h)
	}
}

// Prometheus's envelope and error types.
type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

const (
	badData   = "bad_data"
	execution = "execution"
	timeout   = "timeout"
	canceled  = "canceled"
	internal  = "internal"
)

var statusOf = map[string]int{badData: http.StatusBadRequest, execution: http.StatusUnprocessableEntity,
	timeout: http.StatusServiceUnavailable, canceled: http.StatusServiceUnavailable, internal: http.StatusInternalServerError}

func fail(typ string, err error) (any, int, error) {
	return response{Status: "error", ErrorType: typ, Error: err.Error()}, statusOf[typ], nil
}

func ok(data any) (any, int, error) {
	return response{Status: "success", Data: data}, http.StatusOK, nil
}

type queryData struct {
	ResultType string `json:"resultType"`
	Result     any    `json:"result"`
}

func (r *Room) query(w http.ResponseWriter, req *http.Request) (any, int, error) {
	if err := req.ParseForm(); err != nil {
		return fail(badData, err)
	}
	ts, err := timeParam(req, "time", r.Now())
	if err != nil {
		return fail(badData, err)
	}
	opts, ctx, cancel, err := r.queryOpts(req)
	if err != nil {
		return fail(badData, err)
	}
	defer cancel()
	q, err := r.engine.NewInstantQuery(ctx, Queryable{Store: r.Store}, opts, req.FormValue("query"), ts)
	if err != nil {
		return fail(badData, fmt.Errorf("invalid parameter \"query\": %w", err))
	}
	return r.run(ctx, q)
}

func (r *Room) queryRange(w http.ResponseWriter, req *http.Request) (any, int, error) {
	if err := req.ParseForm(); err != nil {
		return fail(badData, err)
	}
	var errs []error
	start, err := timeParam(req, "start", time.Time{})
	errs = append(errs, err)
	end, err := timeParam(req, "end", time.Time{})
	errs = append(errs, err)
	step, err := durationParam(req, "step")
	errs = append(errs, err)
	for _, name := range []string{"start", "end", "step"} {
		if req.FormValue(name) == "" {
			errs = append(errs, fmt.Errorf("missing parameter %q", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fail(badData, err)
	}
	switch {
	case end.Before(start):
		return fail(badData, errors.New("invalid parameter \"end\": end timestamp must not be before start time"))
	case step <= 0:
		return fail(badData, errors.New("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"))
	case end.Sub(start)/step > maxPoints:
		return fail(badData, fmt.Errorf("exceeded maximum resolution of %d points per timeseries. Try decreasing the query resolution (?step=XX)", maxPoints))
	}
	opts, ctx, cancel, err := r.queryOpts(req)
	if err != nil {
		return fail(badData, err)
	}
	defer cancel()
	q, err := r.engine.NewRangeQuery(ctx, Queryable{Store: r.Store}, opts, req.FormValue("query"), start, end, step)
	if err != nil {
		return fail(badData, fmt.Errorf("invalid parameter \"query\": %w", err))
	}
	return r.run(ctx, q)
}

// queryOpts reads lookback_delta and timeout.
func (r *Room) queryOpts(req *http.Request) (promql.QueryOpts, context.Context, context.CancelFunc, error) {
	var lookback time.Duration
	if req.FormValue("lookback_delta") != "" {
		d, err := durationParam(req, "lookback_delta")
		if err != nil {
			return nil, nil, nil, err
		}
		lookback = d
	}
	ctx, cancel := context.WithCancel(req.Context())
	if req.FormValue("timeout") != "" {
		d, err := durationParam(req, "timeout")
		if err != nil {
			cancel()
			return nil, nil, nil, err
		}
		ctx, cancel = context.WithTimeout(req.Context(), d)
	}
	return promql.NewPrometheusQueryOpts(false, lookback, nil), ctx, cancel, nil
}

func (r *Room) run(ctx context.Context, q promql.Query) (any, int, error) {
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		var (
			tooMany  promql.ErrTooManySamples
			timedOut promql.ErrQueryTimeout
			stopped  promql.ErrQueryCanceled
			store    promql.ErrStorage
		)
		switch {
		case errors.As(res.Err, &timedOut) || errors.Is(res.Err, context.DeadlineExceeded):
			return fail(timeout, res.Err)
		case errors.As(res.Err, &stopped) || errors.Is(res.Err, context.Canceled):
			return fail(canceled, res.Err)
		case errors.As(res.Err, &store):
			return fail(internal, res.Err)
		case errors.As(res.Err, &tooMany):
			return fail(execution, res.Err)
		}
		return fail(execution, res.Err)
	}
	warnings, infos := res.Warnings.AsStrings(q.String(), 10, 10)
	return response{Status: "success", Data: queryData{ResultType: string(res.Value.Type()), Result: res.Value},
		Warnings: warnings, Infos: infos}, http.StatusOK, nil
}

// selection reads match[], start and end (default the last day: a store scans its days).
func (r *Room) selection(req *http.Request, needMatch bool) (sets [][]*labels.Matcher, start, end time.Time, err error) {
	if err := req.ParseForm(); err != nil {
		return nil, start, end, err
	}
	now := r.Now()
	end, err = timeParam(req, "end", now)
	if err != nil {
		return nil, start, end, err
	}
	start, err = timeParam(req, "start", end.Add(-24*time.Hour))
	if err != nil {
		return nil, start, end, err
	}
	if end.Before(start) {
		return nil, start, end, errors.New("invalid parameter \"end\": end timestamp must not be before start time")
	}
	if end.Sub(start) > 31*24*time.Hour {
		return nil, start, end, errors.New("invalid parameters \"start\" and \"end\": at most 31 days apart")
	}
	matches := req.Form["match[]"]
	if needMatch && len(matches) == 0 {
		return nil, start, end, errors.New("no match[] parameter provided")
	}
	if sets, err = r.parser.ParseMetricSelectors(matches); err != nil {
		return nil, start, end, fmt.Errorf("invalid parameter \"match[]\": %w", err)
	}
	return sets, start, end, nil
}

func limitParam(req *http.Request) (int, error) {
	s := req.FormValue("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid parameter \"limit\": %q is no non-negative integer", s)
	}
	return n, nil
}

func (r *Room) labels(w http.ResponseWriter, req *http.Request) (any, int, error) {
	return r.labelAnswer(req, func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, error) {
		names, _, err := q.LabelNames(ctx, hints, ms...)
		return names, err
	})
}

func (r *Room) labelValues(w http.ResponseWriter, req *http.Request) (any, int, error) {
	name := req.PathValue("name")
	if !model.UTF8Validation.IsValidLabelName(name) {
		return fail(badData, fmt.Errorf("invalid label name: %q", name))
	}
	return r.labelAnswer(req, func(ctx context.Context, q storage.Querier, hints *storage.LabelHints, ms []*labels.Matcher) ([]string, error) {
		vals, _, err := q.LabelValues(ctx, name, hints, ms...)
		return vals, err
	})
}

// labelAnswer unions fn's answer over every match[] set (none: all series).
func (r *Room) labelAnswer(req *http.Request, fn func(context.Context, storage.Querier, *storage.LabelHints, []*labels.Matcher) ([]string, error)) (any, int, error) {
	sets, start, end, err := r.selection(req, false)
	if err != nil {
		return fail(badData, err)
	}
	lim, err := limitParam(req)
	if err != nil {
		return fail(badData, err)
	}
	q, _ := Queryable{Store: r.Store}.Querier(start.UnixMilli(), end.UnixMilli())
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	set := map[string]bool{}
	for _, ms := range sets {
		vals, err := fn(req.Context(), q, nil, ms)
		if err != nil {
			return fail(internal, err)
		}
		for _, v := range vals {
			set[v] = true
		}
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	slices.Sort(out)
	if lim > 0 && len(out) > lim {
		out = out[:lim]
	}
	return ok(out)
}

func (r *Room) series(w http.ResponseWriter, req *http.Request) (any, int, error) {
	sets, start, end, err := r.selection(req, true)
	if err != nil {
		return fail(badData, err)
	}
	lim, err := limitParam(req)
	if err != nil {
		return fail(badData, err)
	}
	q, _ := Queryable{Store: r.Store}.Querier(start.UnixMilli(), end.UnixMilli())
	seen := map[string]bool{}
	out := []labels.Labels{}
	for _, ms := range sets {
		err := q.(*querier).eachSeries(req.Context(), ms, func(l labels.Labels) {
			if k := l.String(); !seen[k] && (lim == 0 || len(out) < lim) {
				seen[k] = true
				out = append(out, l)
			}
		})
		if err != nil {
			return fail(internal, err)
		}
	}
	return ok(out)
}

func timeParam(req *http.Request, name string, def time.Time) (time.Time, error) {
	s := req.FormValue(name)
	if s == "" {
		return def, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 1e12 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid parameter %q: cannot parse %q to a valid timestamp", name, s)
}

func durationParam(req *http.Request, name string) (time.Duration, error) {
	s := req.FormValue(name)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if d := f * float64(time.Second); !math.IsNaN(d) && math.Abs(d) < float64(math.MaxInt64) {
			return time.Duration(d), nil
		}
	} else if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("invalid parameter %q: cannot parse %q to a valid duration", name, s)
}
