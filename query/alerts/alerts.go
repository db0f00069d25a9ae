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
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// Config configures the API.
type Config struct {
	Store alertstore.Store
	Now   func() time.Time // default time.Now
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &API{cfg: cfg}, nil
}

// Register mounts the alert board on the query service's router (query.Config.Rooms).
func (a *API) Register(rt *api.Router) {
	h := func(pattern string, fn handler) { rt.Handle(pattern, a.adapt(fn)) }
	w := func(pattern string, fn handler) { rt.Handle(pattern, rt.Admin(a.adapt(fn))) }
	h("GET /api/v1/alerts", a.listAlerts)
	h("GET /api/v1/alerts/{id}", a.getAlert)
	w("POST /api/v1/alerts/{id}/ack", a.ack)
	h("GET /api/v1/silences", a.listSilences)
	w("POST /api/v1/silences", a.createSilence)
	w("DELETE /api/v1/silences/{id}", a.expireSilence)
	h("GET /api/v1/rules", a.listRules)
	h("GET /api/v1/rules/{name}", a.getRule)
	h("GET /api/v1/rules/{name}/history", a.ruleHistory)
	w("PUT /api/v1/rules/{name}", a.putRule)
	w("DELETE /api/v1/rules/{name}", a.deleteRule)
	h("GET /api/v1/strategies", a.listStrategies)
	h("GET /api/v1/strategies/{name}", a.getStrategy)
	h("GET /api/v1/strategies/{name}/history", a.strategyHistory)
	w("PUT /api/v1/strategies/{name}", a.putStrategy)
	w("DELETE /api/v1/strategies/{name}", a.deleteStrategy)
	h("GET /api/v1/events", a.searchEvents)
	h("GET /api/v1/events/{id}", a.getEvent)
}

// handler returns the body and status, or an error whose status is derived from it. by is
// who made a write (X-Mercury-User, default "admin"), for the histories.
type handler func(r *http.Request, by string) (any, int, error)

// errBadRequest marks a request the caller must fix.
var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// adapt maps the store's errors to statuses for the router; the admin check is the router's.
func (a *API) adapt(fn handler) api.HandlerFunc {
	return func(_ http.ResponseWriter, r *http.Request) (any, int, error) {
		by := r.Header.Get("X-Mercury-User")
		if by == "" {
			by = "admin"
		}
		body, code, err := fn(r, by)
		if err != nil {
			return nil, status(err, code), err
		}
		return body, code, nil
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

// decode reads a JSON body of at most 1 MiB, refusing unknown fields (a typo in a rule must
// not silently become a rule without that setting).
func decode(r *http.Request, v any) error {
	if err := api.DecodeJSON(r, 1<<20, v); err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return nil
}

// params parses the known query parameters; unknown ones and bad values are a 400.
func params(r *http.Request, known ...string) (*api.Params, error) {
	p := api.NewParams(r.URL.Query(), known...)
	return p, badParams(p)
}

func badParams(p *api.Params) error {
	if err := p.Err(); err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
	}
	return nil
}

// version is the ?version= of rule and strategy calls (0: the current one).
func version(r *http.Request) (int64, error) {
	p, err := params(r, "version")
	if err != nil {
		return 0, err
	}
	v := p.Int("version", 0, 0, 1<<31)
	return int64(v), badParams(p)
}

// board is an alert as the board shows it: without the delivery outbox.
func board(al alertstore.Alert) alertstore.Alert {
	al.Outbox = nil
	return al
}

func (a *API) listAlerts(r *http.Request, _ string) (any, int, error) {
	p, _ := params(r, "state", "level", "kind", "service", "limit")
	f := alertstore.AlertFilter{
		State:   p.OneOf("state", alertstore.StateFiring, alertstore.StateResolved),
		Level:   p.OneOf("level", alertstore.LevelWarning, alertstore.LevelAlarm),
		Kind:    p.OneOf("kind", alertstore.KindEvent, alertstore.KindMetric, alertstore.KindSelf),
		Service: p.String("service"),
		Limit:   p.Int("limit", 0, 0, 1000),
	}
	if err := badParams(p); err != nil {
		return nil, 0, err
	}
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
	v, err := version(r)
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
	v, err := version(r)
	if err != nil {
		return nil, 0, err
	}
	rule.Versioned = alertstore.Versioned{}
	rule, err = a.cfg.Store.PutRule(r.Context(), rule, v, by)
	return rule, http.StatusOK, err
}

func (a *API) deleteRule(r *http.Request, by string) (any, int, error) {
	v, err := version(r)
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
	v, err := version(r)
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
	v, err := version(r)
	if err != nil {
		return nil, 0, err
	}
	s.Versioned = alertstore.Versioned{}
	s, err = a.cfg.Store.PutStrategy(r.Context(), s, v, by)
	return s, http.StatusOK, err
}

func (a *API) deleteStrategy(r *http.Request, by string) (any, int, error) {
	v, err := version(r)
	if err != nil {
		return nil, 0, err
	}
	name := r.PathValue("name")
	return map[string]string{"deleted": name}, http.StatusOK, a.cfg.Store.DeleteStrategy(r.Context(), name, v, by)
}

// ---- events

func (a *API) searchEvents(r *http.Request, _ string) (any, int, error) {
	p, _ := params(r, "service", "type", "signature", "from", "to", "limit")
	q := alertstore.EventQuery{Service: p.String("service"), Type: p.String("type"), Signature: p.String("signature"),
		From: p.Time("from"), To: p.Time("to"), Limit: p.Int("limit", 0, 0, 1000)}
	if err := badParams(p); err != nil {
		return nil, 0, err
	}
	if !q.To.IsZero() && q.To.Before(q.From) {
		return nil, 0, badRequest("to is before from")
	}
	evs, err := a.cfg.Store.SearchEvents(r.Context(), q)
	return map[string]any{"events": evs}, http.StatusOK, err
}

func (a *API) getEvent(r *http.Request, _ string) (any, int, error) {
	e, err := a.cfg.Store.GetEvent(r.Context(), r.PathValue("id"))
	return e, http.StatusOK, err
}
