package alerts

import (
	"context"
	"time"

	"github.com/mercury-apm/mercury/storage/alertstore"
)

// DomainAlerts tells the domain registry the strategy covering a domain (the first whose
// selectors name it, else one that applies everywhere) and the most severe level firing there.
func (a *API) DomainAlerts(domain string) (strategy, firing string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if strategies, err := a.cfg.Store.Strategies(ctx); err == nil {
		everywhere := ""
		for _, s := range strategies {
			if len(s.Selectors) == 0 && everywhere == "" {
				everywhere = s.Name
			}
			for _, sel := range s.Selectors {
				if sel.Domain != "" && sel.Domain != "*" && sel.Matches(domain, sel.Service, sel.Operation, sel.Host) {
					strategy = s.Name
					break
				}
			}
			if strategy != "" {
				break
			}
		}
		if strategy == "" {
			strategy = everywhere
		}
	}
	alerts, err := a.cfg.Store.ListAlerts(ctx, alertstore.AlertFilter{State: alertstore.StateFiring, Limit: 1000})
	if err != nil {
		return strategy, ""
	}
	for _, al := range alerts {
		if al.Domain != domain {
			continue
		}
		if al.Level == alertstore.LevelAlarm {
			return strategy, "alarm"
		}
		firing = "warning"
	}
	return strategy, firing
}
