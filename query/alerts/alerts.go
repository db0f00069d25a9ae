// Package alerts is the alert board's HTTP API, mounted on `mercury query`: alerts with
// their history, acknowledgement, silences, versioned rules and strategies, and the events
// behind the alerts. Reads are open; every write needs the admin token
// (Authorization: Bearer <token>).
//
//	GET    /api/v1/alerts?state=&level=&service=&kind=&limit=
//	GET    /api/v1/alerts/{id}
//	POST   /api/v1/alerts/{id}/ack                  {"by": "alice", "comment": "on it"}
//	GET    /api/v1/silences
//	POST   /api/v1/silences                         a Silence (id assigned)
//	DELETE /api/v1/silences/{id}                    expires it now
//	GET    /api/v1/rules             /api/v1/strategies
//	GET    /api/v1/rules/{name}?version=            /api/v1/strategies/{name}?version=
//	GET    /api/v1/rules/{name}/history             /api/v1/strategies/{name}/history
//	PUT    /api/v1/rules/{name}?version=N           /api/v1/strategies/{name}?version=N
//	DELETE /api/v1/rules/{name}?version=N           /api/v1/strategies/{name}?version=N
//	GET    /api/v1/events?service=&type=&signature=&from=&to=&limit=
//	GET    /api/v1/events/{id}
//
// A PUT or DELETE names the version it replaces (0 for a new name): a concurrent edit gets
// 409 instead of being overwritten.
package alerts

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/storage/alertstore"
)

// Config configures the API.
type Config struct {
	Store alertstore.Store
	// AdminToken guards every write; empty disables writes (403).
	AdminToken string
	Logger     *slog.Logger
	Now        func() time.Time // default time.Now
}

// API serves the alert board.
type API struct {
	cfg Config
}

// New checks cfg.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil {
		return nil, errors.New("alerts API: no alert store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &API{cfg: cfg}, nil
}

// Routes mounts the API on mux.
func (a *API) Routes(mux *http.ServeMux) {
	h := func(pattern string, fn handler) { mux.HandleFunc(pattern, a.serve(fn)) }
	h("GET /api/v1/alerts", a.listAlerts)
	h("GET /api/v1/alerts/{id}", a.getAlert)
	h("POST /api/v1/alerts/{id}/ack", a.admin(a.ack))
	h("GET /api/v1/silences", a.listSilences)
	h("POST /api/v1/silences", a.admin(a.createSilence))
	h("DELETE /api/v1/silences/{id}", a.admin(a.expireSilence))
	h("GET /api/v1/rules", a.listRules)
	h("GET /api/v1/rules/{name}", a.getRule)
	h("GET /api/v1/rules/{name}/history", a.ruleHistory)
	h("PUT /api/v1/rules/{name}", a.admin(a.putRule))
	h("DELETE /api/v1/rules/{name}", a.admin(a.deleteRule))
	h("GET /api/v1/strategies", a.listStrategies)
	h("GET /api/v1/strategies/{name}", a.getStrategy)
	h("GET /api/v1/strategies/{name}/history", a.strategyHistory)
	h("PUT /api/v1/strategies/{name}", a.admin(a.putStrategy))
	h("DELETE /api/v1/strategies/{name}", a.admin(a.deleteStrategy))
	h("GET /api/v1/events", a.searchEvents)
	h("GET /api/v1/events/{id}", a.getEvent)
}

// handler returns the body and status, or an error whose status is derived from it.
type handler func(r *http.Request, by string) (any, int, error)

// errBadRequest marks a request the caller must fix.
var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

func (a *API) serve(fn handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, code, err := fn(r, "")
		if err != nil {
			code = status(err, code)
			if code >= 500 {
				a.cfg.Logger.Error("alerts API", "path", r.URL.Path, "err", err)
			}
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mercury"`)
			}
			body = map[string]string{"error": err.Error()}
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			code, buf = http.StatusInternalServerError, *bytes.NewBufferString(`{"error":"encode"}`)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(buf.Bytes())
	}
}

func status(err error, code int) int {
	switch {
	case code >= 400:
		return code
	case errors.Is(err, errBadRequest), errors.Is(err, alertstore.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, alertstore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, alertstore.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, alertstore.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// admin lets the request through with the admin token; the caller's name (X-Mercury-User,
// default "admin") goes into histories.
func (a *API) admin(fn handler) handler {
	return func(r *http.Request, _ string) (any, int, error) {
		if a.cfg.AdminToken == "" {
			return nil, http.StatusForbidden, errors.New("writes are disabled: start the query service with an admin token")
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.AdminToken)) != 1 {
			return nil, http.StatusUnauthorized, errors.New("admin token required")
		}
		by := r.Header.Get("X-Mercury-User")
		if by == "" {
			by = "admin"
		}
		return fn(r, by)
	}
}

// decode reads a JSON body of at most 1 MiB, refusing unknown fields (a typo in a rule must
// not silently become a rule without that setting).
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("body: %v", err)
	}
	return nil
}

func intParam(r *http.Request, name string) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("%s %q: want a non-negative integer", name, s)
	}
	return n, nil
}

// timeParam accepts RFC 3339 or Unix milliseconds.
func timeParam(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, badRequest("%s %q: want RFC 3339 or Unix milliseconds", name, s)
	}
	return t, nil
}

func oneOf(r *http.Request, name string, allowed ...string) (string, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return "", nil
	}
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", badRequest("%s %q: want one of %s", name, v, strings.Join(allowed, ", "))
}

// ---- alerts

// board is an alert as the board shows it: without the delivery outbox.
func board(al alertstore.Alert) alertstore.Alert {
	al.Outbox = nil
	return al
}

func (a *API) listAlerts(r *http.Request, _ string) (any, int, error) {
	var f alertstore.AlertFilter
	var err error
	if f.State, err = oneOf(r, "state", alertstore.StateFiring, alertstore.StateResolved); err != nil {
		return nil, 0, err
	}
	if f.Level, err = oneOf(r, "level", alertstore.LevelWarning, alertstore.LevelAlarm); err != nil {
		return nil, 0, err
	}
	if f.Kind, err = oneOf(r, "kind", alertstore.KindEvent, alertstore.KindMetric, alertstore.KindSelf); err != nil {
		return nil, 0, err
	}
	f.Service = r.URL.Query().Get("service")
	limit, err := intParam(r, "limit")
	if err != nil {
		return nil, 0, err
	}
	f.Limit = int(min(limit, 1000))
	als, err := a.cfg.Store.ListAlerts(r.Context(), f)
	if err != nil {
		return nil, 0, err
	}
	out := make([]alertstore.Alert, len(als))
	for i := range als {
		out[i] = board(als[i])
	}
	return map[string]any{"alerts": out}, http.StatusOK, nil
}

func (a *API) getAlert(r *http.Request, _ string) (any, int, error) {
	al, err := a.cfg.Store.GetAlert(r.Context(), r.PathValue("id"))
	return board(al), http.StatusOK, err
}

type ackRequest struct {
	By      string `json:"by"`
	Comment string `json:"comment,omitempty"`
}

func (a *API) ack(r *http.Request, by string) (any, int, error) {
	var req ackRequest
	if err := decode(r, &req); err != nil {
		return nil, 0, err
	}
	if req.By == "" {
		req.By = by
	}
	now := a.cfg.Now()
	al, err := a.cfg.Store.UpdateAlert(r.Context(), r.PathValue("id"), func(al *alertstore.Alert) error {
		if al.AckedBy != "" {
			return fmt.Errorf("%w: already acknowledged by %s", alertstore.ErrConflict, al.AckedBy)
		}
		al.AckedBy, al.AckedAt = req.By, now.UTC()
		al.History = append(al.History, alertstore.Change{At: now, What: "acked", By: req.By, Note: req.Comment})
		return nil
	})
	return board(al), http.StatusOK, err
}

// ---- silences

func (a *API) listSilences(r *http.Request, _ string) (any, int, error) {
	s, err := a.cfg.Store.Silences(r.Context())
	return map[string]any{"silences": s}, http.StatusOK, err
}

func (a *API) createSilence(r *http.Request, by string) (any, int, error) {
	var s alertstore.Silence
	if err := decode(r, &s); err != nil {
		return nil, 0, err
	}
	if s.ID != "" {
		return nil, 0, badRequest("a new silence has no id")
	}
	if s.StartsAt.IsZero() {
		s.StartsAt = a.cfg.Now().UTC()
	}
	if s.CreatedBy == "" {
		s.CreatedBy = by
	}
	s, err := a.cfg.Store.PutSilence(r.Context(), s)
	return s, http.StatusCreated, err
}

func (a *API) expireSilence(r *http.Request, _ string) (any, int, error) {
	s, err := a.cfg.Store.GetSilence(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, 0, err
	}
	now := a.cfg.Now().UTC()
	if !s.EndsAt.After(now) {
		return s, http.StatusOK, nil // already over
	}
	s.EndsAt = now
	if !s.EndsAt.After(s.StartsAt) { // not started yet: it ends before it begins
		s.StartsAt = now.Add(-time.Nanosecond)
	}
	s, err = a.cfg.Store.PutSilence(r.Context(), s)
	return s, http.StatusOK, err
}

// ---- rules and strategies

func (a *API) listRules(r *http.Request, _ string) (any, int, error) {
	rs, err := a.cfg.Store.Rules(r.Context())
	return map[string]any{"rules": rs}, http.StatusOK, err
}

func (a *API) getRule(r *http.Request, _ string) (any, int, error) {
	v, err := intParam(r, "version")
	if err != nil {
		return nil, 0, err
	}
	rule, err := a.cfg.Store.GetRule(r.Context(), r.PathValue("name"), v)
	return rule, http.StatusOK, err
}

func (a *API) ruleHistory(r *http.Request, _ string) (any, int, error) {
	h, err := a.cfg.Store.RuleHistory(r.Context(), r.PathValue("name"))
	return map[string]any{"versions": h}, http.StatusOK, err
}

func (a *API) putRule(r *http.Request, by string) (any, int, error) {
	var rule alertstore.Rule
	if err := decode(r, &rule); err != nil {
		return nil, 0, err
	}
	name := r.PathValue("name")
	if rule.Name == "" {
		rule.Name = name
	}
	if rule.Name != name {
		return nil, 0, badRequest("body names rule %q, path %q", rule.Name, name)
	}
	v, err := intParam(r, "version")
	if err != nil {
		return nil, 0, err
	}
	rule.Versioned = alertstore.Versioned{}
	rule, err = a.cfg.Store.PutRule(r.Context(), rule, v, by)
	return rule, http.StatusOK, err
}

func (a *API) deleteRule(r *http.Request, by string) (any, int, error) {
	v, err := intParam(r, "version")
	if err != nil {
		return nil, 0, err
	}
	name := r.PathValue("name")
	sts, err := a.cfg.Store.Strategies(r.Context())
	if err != nil {
		return nil, 0, err
	}
	for _, st := range sts {
		for _, rn := range st.Rules {
			if rn == name {
				return nil, http.StatusConflict, fmt.Errorf("rule %s is used by strategy %s", name, st.Name)
			}
		}
	}
	return map[string]string{"deleted": name}, http.StatusOK, a.cfg.Store.DeleteRule(r.Context(), name, v, by)
}

func (a *API) listStrategies(r *http.Request, _ string) (any, int, error) {
	s, err := a.cfg.Store.Strategies(r.Context())
	return map[string]any{"strategies": s}, http.StatusOK, err
}

func (a *API) getStrategy(r *http.Request, _ string) (any, int, error) {
	v, err := intParam(r, "version")
	if err != nil {
		return nil, 0, err
	}
	s, err := a.cfg.Store.GetStrategy(r.Context(), r.PathValue("name"), v)
	return s, http.StatusOK, err
}

func (a *API) strategyHistory(r *http.Request, _ string) (any, int, error) {
	h, err := a.cfg.Store.StrategyHistory(r.Context(), r.PathValue("name"))
	return map[string]any{"versions": h}, http.StatusOK, err
}

func (a *API) putStrategy(r *http.Request, by string) (any, int, error) {
	var s alertstore.Strategy
	if err := decode(r, &s); err != nil {
		return nil, 0, err
	}
	name := r.PathValue("name")
	if s.Name == "" {
		s.Name = name
	}
	if s.Name != name {
		return nil, 0, badRequest("body names strategy %q, path %q", s.Name, name)
	}
	for _, rn := range s.Rules {
		if _, err := a.cfg.Store.GetRule(r.Context(), rn, 0); errors.Is(err, alertstore.ErrNotFound) {
			return nil, 0, badRequest("strategy %s names rule %s, which does not exist", name, rn)
		} else if err != nil {
			return nil, 0, err
		}
	}
	v, err := intParam(r, "version")
	if err != nil {
		return nil, 0, err
	}
	s.Versioned = alertstore.Versioned{}
	s, err = a.cfg.Store.PutStrategy(r.Context(), s, v, by)
	return s, http.StatusOK, err
}

func (a *API) deleteStrategy(r *http.Request, by string) (any, int, error) {
	v, err := intParam(r, "version")
	if err != nil {
		return nil, 0, err
	}
	name := r.PathValue("name")
	return map[string]string{"deleted": name}, http.StatusOK, a.cfg.Store.DeleteStrategy(r.Context(), name, v, by)
}

// ---- events

func (a *API) searchEvents(r *http.Request, _ string) (any, int, error) {
	q := alertstore.EventQuery{Service: r.URL.Query().Get("service"), Type: r.URL.Query().Get("type"),
		Signature: r.URL.Query().Get("signature")}
	var err error
	if q.From, err = timeParam(r, "from"); err != nil {
		return nil, 0, err
	}
	if q.To, err = timeParam(r, "to"); err != nil {
		return nil, 0, err
	}
	if !q.To.IsZero() && q.To.Before(q.From) {
		return nil, 0, badRequest("to is before from")
	}
	limit, err := intParam(r, "limit")
	if err != nil {
		return nil, 0, err
	}
	q.Limit = int(min(limit, 1000))
	evs, err := a.cfg.Store.SearchEvents(r.Context(), q)
	return map[string]any{"events": evs}, http.StatusOK, err
}

func (a *API) getEvent(r *http.Request, _ string) (any, int, error) {
	e, err := a.cfg.Store.GetEvent(r.Context(), r.PathValue("id"))
	return e, http.StatusOK, err
}
