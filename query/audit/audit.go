// Package audit is the query service's reconciliation room: GET /api/v1/audit?from=&to=
// answers what `mercury audit` prints, as JSON (reconcile.Report).
package audit

import (
	"errors"
	"net/http"

	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/reconcile"
)

// Room serves the audit. An audit reads two topics and both stores, so one runs at a time;
// a second request meanwhile gets 429.
type Room struct {
	// Config is where to count; without brokers or a metric store the endpoint answers 503
	// saying what is missing.
	Config reconcile.Config
	busy   chan struct{}
}

// Register mounts GET /api/v1/audit.
func (a *Room) Register(rt *api.Router) {
	a.busy = make(chan struct{}, 1)
	rt.Handle("GET /api/v1/audit", a.audit)
}

func (a *Room) audit(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	p := api.NewParams(r.URL.Query(), "from", "to")
	from, to := p.Time("from"), p.Time("to")
	if p.String("from") == "" || p.String("to") == "" {
		p.Bad("from and to are required (RFC 3339 or Unix milliseconds)")
	}
	if err := p.Err(); err != nil {
		return nil, http.StatusBadRequest, err
	}
	if _, _, err := reconcile.Align(from, to); err != nil {
		return nil, http.StatusBadRequest, err
	}
	switch {
	case len(a.Config.Bus.Brokers) == 0:
		return nil, http.StatusServiceUnavailable, errors.New("audit: the query service has no brokers to read mercury.spans and mercury.heartbeats from")
	case a.Config.Metrics == nil:
		return nil, http.StatusServiceUnavailable, errors.New("audit: the query service has no metric store")
	}
	select {
	case a.busy <- struct{}{}:
		defer func() { <-a.busy }()
	default:
		return nil, http.StatusTooManyRequests, errors.New("audit: another audit is running; try again when it is done")
	}
	rep, err := reconcile.Run(r.Context(), a.Config, from, to)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	return rep, http.StatusOK, nil
}
