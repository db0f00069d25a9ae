package aggregator

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// admission caps the series one phase-2 partition stores per service and UTC day at its
// share of Config.MaxSeries; the partials of further series are merged into the service's
// __other__ series of this partition. A series is admitted for good once its first point
// is stored: the admitted set is the day's catalog (rebuilt from the store after a restart),
// so a replay decides like the original run for everything that was stored.
type admission struct {
	store       metricstore.Store
	quota       int // series per service, day and partition
	part, parts int // this partition, the topic's partition count
	days        map[int64]map[serviceKey]map[string]bool
	newest      int64 // the newest day loaded
}

type serviceKey struct {
	domain, service string
	dyed            bool
}

func newAdmission(store metricstore.Store, maxSeries, part, parts int) *admission {
	return &admission{store: store, quota: max(1, (maxSeries+parts-1)/parts), part: part, parts: parts,
		days: map[int64]map[serviceKey]map[string]bool{}}
}

// partitionOf is the partition of mercury.metrics.20s a series id is keyed to (the writer's
// murmur2 balancer over every partition).
func partitionOf(id string, parts int) int {
	all := make([]int, parts)
	for i := range all {
		all[i] = i
	}
	return (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: []byte(id)}, all...)
}

// target is the series a partial of series id (labels l) for minute is counted under, and
// whether it overflowed.
func (ad *admission) target(ctx context.Context, l metric.Labels, id string, minute int64) (metric.Labels, string, bool, error) {
	if l.IsOverflow() { // phase 1 folded it already
		return l, id, false, nil
	}
	day := minute - ((minute%86400)+86400)%86400
	svcs, err := ad.day(ctx, day)
	if err != nil {
		return l, id, false, err
	}
	k := serviceKey{l.Domain, l.Service, l.Dyed}
	ids := svcs[k]
	if ids[id] {
		return l, id, false, nil
	}
	if len(ids) < ad.quota {
		if ids == nil {
			ids = map[string]bool{}
			svcs[k] = ids
		}
		ids[id] = true
		return l, id, false, nil
	}
	o := l.Overflow()
	return o, o.OverflowID(ad.part), true, nil
}

// day returns the admitted series of a day, loading the day's catalog on first use. Days
// more than two before the newest are forgotten (a partial that late re-loads its day).
func (ad *admission) day(ctx context.Context, day int64) (map[serviceKey]map[string]bool, error) {
	if svcs, ok := ad.days[day]; ok {
		return svcs, nil
	}
	svcs := map[serviceKey]map[string]bool{}
	start, end := time.Unix(day, 0), time.Unix(day+86400, 0)
	for _, f := range []metricstore.Filter{{}, {Edges: true}, {Dyed: true}, {Edges: true, Dyed: true}} {
		ss, err := ad.store.Series(ctx, f, start, end)
		if err != nil {
			return nil, err
		}
		for _, s := range ss {
			if s.Labels.IsOverflow() || partitionOf(s.ID, ad.parts) != ad.part {
				continue
			}
			k := serviceKey{s.Labels.Domain, s.Labels.Service, s.Labels.Dyed}
			if svcs[k] == nil {
				svcs[k] = map[string]bool{}
			}
			svcs[k][s.ID] = true
		}
	}
	ad.days[day] = svcs
	if day > ad.newest {
		ad.newest = day
		for d := range ad.days {
			if d < day-2*86400 {
				delete(ad.days, d)
			}
		}
	}
	return svcs, nil
}
