// Package alerts is the query service's alert room, the alert board's API: alerts with their
// history, acknowledgement, silences, versioned rules and strategies, and the events behind
// the alerts. Reads are open; every write needs the admin token (Authorization: Bearer
// <token>; X-Mercury-User names the writer in histories). It also tells the domain registry
// each domain's strategy and what fires there (agents.AlertState).
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
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/query/agents"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// Room serves the alert board from an alert store.
type Room struct {
	Store alertstore.Store
	Now   func() time.Time // nil: time.Now

	mu     sync.Mutex
	view   *domainView // what DomainAlerts answers from, read at cached
	cached time.Time
}

var _ agents.AlertState = (*Room)(nil)

// Register mounts the alert endpoints.
func (a *Room) Register(rt *api.Router) {
	rt.Handle("GET /api/v1/alerts", a.listAlerts)
	rt.Handle("GET /api/v1/alerts/{id}", a.getAlert)
	rt.Handle("POST /api/v1/alerts/{id}/ack", rt.Admin(a.ack))
	rt.Handle("GET /api/v1/silences", a.listSilences)
	rt.Handle("POST /api/v1/silences", rt.Admin(a.createSilence))
	rt.Handle("DELETE /api/v1/silences/{id}", rt.Admin(a.expireSilence))
	rt.Handle("GET /api/v1/rules", a.listRules)
	rt.Handle("GET /api/v1/rules/{name}", a.getRule)
	rt.Handle("GET /api/v1/rules/{name}/history", a.ruleHistory)
	rt.Handle("PUT /api/v1/rules/{name}", rt.Admin(a.putRule))
	rt.Handle("DELETE /api/v1/rules/{name}", rt.Admin(a.deleteRule))
	rt.Handle("GET /api/v1/strategies", a.listStrategies)
	rt.Handle("GET /api/v1/strategies/{name}", a.getStrategy)
	rt.Handle("GET /api/v1/strategies/{name}/history", a.strategyHistory)
	rt.Handle("PUT /api/v1/strategies/{name}", rt.Admin(a.putStrategy))
	rt.Handle("DELETE /api/v1/strategies/{name}", rt.Admin(a.deleteStrategy))
	rt.Handle("GET /api/v1/events", a.searchEvents)
	rt.Handle("GET /api/v1/events/{id}", a.getEvent)
}

func (a *Room) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// reply maps the store's errors to their statuses.
func reply(body any, ok int, err error) (any, int, error) {
	switch {
	case err == nil:
		return body, ok, nil
	case errors.Is(err, alertstore.ErrInvalid):
		return nil, http.StatusBadRequest, err
	case errors.Is(err, alertstore.ErrNotFound):
		return nil, http.StatusNotFound, err
	case errors.Is(err, alertstore.ErrConflict):
		return nil, http.StatusConflict, err
	case errors.Is(err, alertstore.ErrClosed):
		return nil, http.StatusServiceUnavailable, err
	}
	return nil, http.StatusInternalServerError, err
}

func bad(format string, args ...any) (any, int, error) {
	return nil, http.StatusBadRequest, fmt.Errorf(format, args...)
}

// by is who makes a change, for the histories.
func by(r *http.Request) string {
	if u := r.Header.Get("X-Mercury-User"); u != "" {
		return u
	}
	return "admin"
}

func oneOf(p *api.Params, name string, allowed ...string) string {
	v := p.String(name)
	if v == "" {
		return ""
	}
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.Bad("%s %q: want one of %v", name, v, allowed)
	return ""
}

// version is the ?version= a read asks for or a write replaces (0: current / new).
func version(r *http.Request) (int64, error) {
	p := api.NewParams(r.URL.Query(), "version")
	v := p.Int("version", 0, 0, 1<<31)
	return int64(v), p.Err()
}

const bodyLimit = 1 << 20

// ---- alerts

// board is an alert as the board shows it: without the delivery outbox.
func board(al alertstore.Alert) alertstore.Alert {
	al.Outbox = nil
	return al
}

func (a *Room) listAlerts(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	p := api.NewParams(r.URL.Query(), "state", "level", "service", "kind", "limit")
	f := alertstore.AlertFilter{
		State:   oneOf(p, "state", alertstore.StateFiring, alertstore.StateResolved),
		Level:   oneOf(p, "level", alertstore.LevelWarning, alertstore.LevelAlarm),
		Kind:    oneOf(p, "kind", alertstore.KindEvent, alertstore.KindMetric, alertstore.KindSelf),
		Service: p.String("service"),
		Limit:   p.Int("limit", 100, 1, 1000),
	}
	if err := p.Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	als, err := a.Store.ListAlerts(r.Context(), f)
	out := make([]alertstore.Alert, len(als))
	for i := range als {
		out[i] = board(als[i])
	}
	return reply(map[string]any{"alerts": out}, http.StatusOK, err)
}

func (a *Room) getAlert(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	al, err := a.Store.GetAlert(r.Context(), r.PathValue("id"))
	return reply(board(al), http.StatusOK, err)
}

type ackRequest struct {
	By      string `json:"by"`
	Comment string `json:"comment,omitempty"`
}

func (a *Room) ack(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	var req ackRequest
	if err := api.DecodeJSON(r, bodyLimit, &req); err != nil {
		return nil, http.StatusBadRequest, err
	}
	if req.By == "" {
		req.By = by(r)
	}
	now := a.now()
	al, err := a.Store.UpdateAlert(r.Context(), r.PathValue("id"), func(al *alertstore.Alert) error {
		if al.AckedBy != "" {
			return fmt.Errorf("%w: already acknowledged by %s", alertstore.ErrConflict, al.AckedBy)
		}
		al.AckedBy, al.AckedAt = req.By, now.UTC()
		al.History = append(al.History, alertstore.Change{At: now, What: "acked", By: req.By, Note: req.Comment})
		return nil
	})
	return reply(board(al), http.StatusOK, err)
}

// ---- silences

func (a *Room) listSilences(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	s, err := a.Store.Silences(r.Context())
	return reply(map[string]any{"silences": s}, http.StatusOK, err)
}

func (a *Room) createSilence(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	var s alertstore.Silence
	if err := api.DecodeJSON(r, bodyLimit, &s); err != nil {
		return nil, http.StatusBadRequest, err
	}
	if s.ID != "" {
		return bad("a new silence has no id")
	}
	if s.StartsAt.IsZero() {
		s.StartsAt = a.now().UTC()
	}
	if s.CreatedBy == "" {
		s.CreatedBy = by(r)
	}
	s, err := a.Store.PutSilence(r.Context(), s)
	return reply(s, http.StatusCreated, err)
}

func (a *Room) expireSilence(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	s, err := a.Store.GetSilence(r.Context(), r.PathValue("id"))
	if err != nil {
		return reply(nil, 0, err)
	}
	now := a.now().UTC()
	if !s.EndsAt.After(now) {
		return s, http.StatusOK, nil // already over
	}
	s.EndsAt = now
	if !s.EndsAt.After(s.StartsAt) { // not started yet: it ends as it begins
		s.StartsAt = now.Add(-time.Nanosecond)
	}
	s, err = a.Store.PutSilence(r.Context(), s)
	return reply(s, http.StatusOK, err)
}

// ---- rules and strategies

func (a *Room) listRules(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	rs, err := a.Store.Rules(r.Context())
	return reply(map[string]any{"rules": rs}, http.StatusOK, err)
}

func (a *Room) getRule(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	v, err := version(r)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	rule, err := a.Store.GetRule(r.Context(), r.PathValue("name"), v)
	return reply(rule, http.StatusOK, err)
}

func (a *Room) ruleHistory(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	h, err := a.Store.RuleHistory(r.Context(), r.PathValue("name"))
	return reply(map[string]any{"versions": h}, http.StatusOK, err)
}

func (a *Room) putRule(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	v, err := version(r)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	var rule alertstore.Rule
	if err := api.DecodeJSON(r, bodyLimit, &rule); err != nil {
		return nil, http.StatusBadRequest, err
	}
	name := r.PathValue("name")
	if rule.Name == "" {
		rule.Name = name
	}
	if rule.Name != name {
		return bad("body names rule %q, path %q", rule.Name, name)
	}
	rule.Versioned = alertstore.Versioned{}
	rule, err = a.Store.PutRule(r.Context(), rule, v, by(r))
	return reply(rule, http.StatusOK, err)
}

func (a *Room) deleteRule(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	v, err := version(r)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	name := r.PathValue("name")
	sts, err := a.Store.Strategies(r.Context())
	if err != nil {
		return reply(nil, 0, err)
	}
	for _, st := range sts {
		for _, rn := range st.Rules {
			if rn == name {
				return nil, http.StatusConflict, fmt.Errorf("rule %s is used by strategy %s", name, st.Name)
			}
		}
	}
	return reply(map[string]string{"deleted": name}, http.StatusOK, a.Store.DeleteRule(r.Context(), name, v, by(r)))
}

func (a *Room) listStrategies(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	s, err := a.Store.Strategies(r.Context())
	return reply(map[string]any{"strategies": s}, http.StatusOK, err)
}

func (a *Room) getStrategy(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	v, err := version(r)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	s, err := a.Store.GetStrategy(r.Context(), r.PathValue("name"), v)
	return reply(s, http.StatusOK, err)
}

func (a *Room) strategyHistory(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	h, err := a.Store.StrategyHistory(r.Context(), r.PathValue("name"))
	return reply(map[string]any{"versions": h}, http.StatusOK, err)
}

func (a *Room) putStrategy(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	v, err := version(r)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	var s alertstore.Strategy
	if err := api.DecodeJSON(r, bodyLimit, &s); err != nil {
		return nil, http.StatusBadRequest, err
	}
	name := r.PathValue("name")
	if s.Name == "" {
		s.Name = name
	}
	if s.Name != name {
		return bad("body names strategy %q, path %q", s.Name, name)
	}
	for _, rn := range s.Rules {
		if _, err := a.Store.GetRule(r.Context(), rn, 0); errors.Is(err, alertstore.ErrNotFound) {
			return bad("strategy %s names rule %s, which does not exist", name, rn)
		} else if err != nil {
			return reply(nil, 0, err)
		}
	}
	s.Versioned = alertstore.Versioned{}
	s, err = a.Store.PutStrategy(r.Context(), s, v, by(r))
	return reply(s, http.StatusOK, err)
}

func (a *Room) deleteStrategy(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	v, err := version(r)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	name := r.PathValue("name")
	return reply(map[string]string{"deleted": name}, http.StatusOK, a.Store.DeleteStrategy(r.Context(), name, v, by(r)))
}

// ---- events

func (a *Room) searchEvents(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	p := api.NewParams(r.URL.Query(), "service", "type", "signature", "from", "to", "limit")
	q := alertstore.EventQuery{Service: p.String("service"), Type: p.String("type"), Signature: p.String("signature"),
		From: p.Time("from"), To: p.Time("to"), Limit: p.Int("limit", 100, 1, 1000)}
	if !q.To.IsZero() && q.To.Before(q.From) {
		p.Bad("to is before from")
	}
	if err := p.Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	evs, err := a.Store.SearchEvents(r.Context(), q)
	return reply(map[string]any{"events": evs}, http.StatusOK, err)
}

func (a *Room) getEvent(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	e, err := a.Store.GetEvent(r.Context(), r.PathValue("id"))
	return reply(e, http.StatusOK, err)
}

// ---- the domain registry's view

// DomainAlerts is the first strategy (by name) that covers the domain — one without
// selectors covers every domain — and the most severe level firing there
// (agents.AlertState). The registry asks once per domain per view: what it needs from the
// store is read once and kept for 5 s.
func (a *Room) DomainAlerts(domain string) (strategy, firing string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now := a.now(); a.view == nil || now.Sub(a.cached) > 5*time.Second {
		a.view, a.cached = a.readView(), now
	}
	for _, st := range a.view.strategies {
		if coversDomain(&st, domain) {
			strategy = st.Name
			break
		}
	}
	return strategy, a.view.firing[domain]
}

type domainView struct {
	strategies []alertstore.Strategy
	firing     map[string]string // domain → most severe firing level
}

func (a *Room) readView() *domainView {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v := &domainView{firing: map[string]string{}}
	if als, err := a.Store.ListAlerts(ctx, alertstore.AlertFilter{State: alertstore.StateFiring, Limit: 1000}); err == nil {
		for _, al := range als {
			if v.firing[al.Domain] != alertstore.LevelAlarm {
				v.firing[al.Domain] = al.Level
			}
		}
	}
	v.strategies, _ = a.Store.Strategies(ctx) // unreadable: no strategy shown, nothing else fails
	return v
}

func coversDomain(st *alertstore.Strategy, domain string) bool {
	if len(st.Selectors) == 0 {
		return true
	}
	for _, sel := range st.Selectors {
		if sel.Domain != "" && (alertstore.Selector{Domain: sel.Domain}).Matches(domain, "", "", "") {
			return true
		}
	}
	return false
}
