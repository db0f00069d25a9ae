package alerter

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// ruleset is one consistent view of the stored rules, strategies and silences. It is
// rebuilt every RulesRefresh and swapped in whole, so a decision never sees half an edit.
type ruleset struct {
	events   []bound // event rules, in strategy-name then listed order
	metrics  []bound
	silences []alertstore.Silence
	// Strategy problems (a rule named but missing) are kept to report, not fatal: the rest
	// still alerts.
	problems []string
}

// bound is a rule as one strategy assigns it.
type bound struct {
	strategy *alertstore.Strategy // nil: the built-in default
	rule     *alertstore.Rule
	name     *regexp.Regexp // event rules' Match.Name
}

// defaultEventRule applies to events no strategy's event rule matches; defaultRecovery to
// those of them that report things getting better (a breaker closing, an upstream healthy
// again, a degradation switched off): stored and searchable, but nobody is paged for them.
var (
	defaultEventRule = bound{rule: &alertstore.Rule{Name: "event", Kind: alertstore.RuleEvent}}
	defaultRecovery  = bound{rule: &alertstore.Rule{Name: "event-recovery", Kind: alertstore.RuleEvent, Ignore: true}}
)

// recovery reports whether a gateway transition event says something got better.
func recovery(ev *schemas.Event) bool {
	attr := func(k string) string { v, _ := schemas.Get(ev.Attributes, k); return v }
	switch ev.Type {
	case schemas.EventBreaker:
		to := attr("to")
		return to != "" && to != "open"
	case schemas.EventUpstreamHealth:
		return attr("healthy") == "true"
	case schemas.EventDegrade:
		return attr("on") == "false"
	}
	return false
}

func loadRuleset(ctx context.Context, s alertstore.Store) (*ruleset, error) {
	rules, err := s.Rules(ctx)
	if err != nil {
		return nil, fmt.Errorf("alerter: load rules: %w", err)
	}
	strategies, err := s.Strategies(ctx)
	if err != nil {
		return nil, fmt.Errorf("alerter: load strategies: %w", err)
	}
	silences, err := s.Silences(ctx)
	if err != nil {
		return nil, fmt.Errorf("alerter: load silences: %w", err)
	}
	byName := make(map[string]*alertstore.Rule, len(rules))
	for i := range rules {
		byName[rules[i].Name] = &rules[i]
	}
	sort.Slice(strategies, func(i, j int) bool { return strategies[i].Name < strategies[j].Name })
	rs := &ruleset{silences: silences}
	for i := range strategies {
		st := &strategies[i]
		for _, name := range st.Rules {
			r, ok := byName[name]
			if !ok {
				rs.problems = append(rs.problems, fmt.Sprintf("strategy %s names missing rule %s", st.Name, name))
				continue
			}
			b := bound{strategy: st, rule: r}
			if r.Kind == alertstore.RuleEvent {
				if r.Match.Name != "" {
					b.name = regexp.MustCompile(r.Match.Name) // validated when stored
				}
				rs.events = append(rs.events, b)
			} else {
				rs.metrics = append(rs.metrics, b)
			}
		}
	}
	return rs, nil
}

// forEvent is the first event rule whose strategy covers the event and whose match holds.
func (rs *ruleset) forEvent(ev *schemas.Event) bound {
	for _, b := range rs.events {
		if !b.strategy.Applies(ev.Domain, ev.Service, ev.Operation, ev.Host) {
			continue
		}
		m := &b.rule.Match
		if m.Type != "" && m.Type != ev.Type {
			continue
		}
		if b.name != nil && !b.name.MatchString(ev.Name) {
			continue
		}
		ok := true
		for k, v := range m.Attributes {
			got, _ := schemas.Get(ev.Attributes, k)
			ok = ok && got == v
		}
		if ok {
			return b
		}
	}
	if recovery(ev) {
		return defaultRecovery
	}
	return defaultEventRule
}

// level is the level of an event alert under b.
func (b bound) eventLevel(ev *schemas.Event) string {
	switch {
	case b.rule.Level != "":
		return b.rule.Level
	case ev.Type == schemas.EventBreaker:
		return alertstore.LevelAlarm // a breaker opening is an outage in progress
	}
	return alertstore.LevelWarning
}

// receivers hear level under b's strategy; the defaults when it names none.
func (b bound) receivers(level string, defaults []string) []string {
	if b.strategy != nil {
		if rs := b.strategy.Receivers[level]; len(rs) > 0 {
			return rs
		}
	}
	return defaults
}

// silencedBy is the id of the first active silence matching the alert, or "".
func (rs *ruleset) silencedBy(a *alertstore.Alert, now time.Time) string {
	labels := a.MatchLabels()
	for i := range rs.silences {
		s := &rs.silences[i]
		if s.Active(now) && s.Matches(labels) {
			return s.ID
		}
	}
	return ""
}
