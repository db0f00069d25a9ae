package traces

import (
	"net/url"
	"time"

	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

// DefaultLookback is how far back a search looks when it names no start: the API, the CLI
// (which leaves it to the API) and the UI share it.
const DefaultLookback = 24 * time.Hour

// ParseSearch turns /api/v1/traces parameters into a validated store query. Every value is
// taken literally: the stores build structured queries, never query strings.
func ParseSearch(v url.Values, now time.Time) (tracestore.Query, error) {
	p := api.NewParams(v, "bk", "service", "operation", "errorType", "event", "start", "end", "lookback", "minDuration", "maxDuration", "errors", "dyed", "limit")
	var q tracestore.Query
	for _, bk := range p.Strings("bk") {
		kv, err := tracestore.ParseBusinessKey(bk)
		if err != nil {
			p.Bad("%v", err)
			continue
		}
		q.BusinessKeys = append(q.BusinessKeys, kv)
	}
	q.Service, q.Operation = p.String("service"), p.String("operation")
	q.ErrorType, q.Event = p.String("errorType"), p.String("event")
	q.Start, q.End = p.Time("start"), p.Time("end")
	lookback := p.Duration("lookback", true)
	if lookback == 0 {
		lookback = DefaultLookback
	}
	if q.Start.IsZero() {
		end := now
		if !q.End.IsZero() {
			end = q.End
		}
		q.Start = end.Add(-lookback)
	}
	q.MinDuration, q.MaxDuration = p.Duration("minDuration", false), p.Duration("maxDuration", false)
	q.ErrorsOnly = p.Bool("errors")
	var err error
	if q.Dyed, err = tracestore.ParseDyed(p.String("dyed")); err != nil {
		p.Bad("%v", err)
	}
	q.Limit = p.Int("limit", 0, 0, tracestore.MaxLimit)
	if err := p.Err(); err != nil {
		return q, err
	}
	return q, q.Validate()
}
