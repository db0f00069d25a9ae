package alertstore

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Rule kinds.
const (
	RuleMetric = "metric" // conditions on mercury.metrics.1m points
	RuleEvent  = "event"  // convergence of mercury.events by signature
)

// Metrics a condition can test. Latencies are in milliseconds, qps per second over the minute.
var Metrics = []string{"qps", "count", "errors", "error_rate", "avg", "p50", "p90", "p99"}

// Baselines a condition can compare against: the value becomes the ratio of this minute's
// value to the same minute's value then.
const (
	BaselineYesterday = "yesterday"
	BaselineLastWeek  = "last_week"
)

// Rule is one alerting rule. A metric rule's conditions form a group: it holds at a level
// only when every condition holds at that level, for For consecutive minutes.
type Rule struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Description string `json:"description,omitempty"`

	Conditions []Condition `json:"conditions,omitempty"`
	For        int         `json:"for,omitempty"` // consecutive minutes; 0 means 1

	Match       EventMatch `json:"match,omitempty"`
	Window      Duration   `json:"window,omitempty"`      // convergence window; 0 means the alerter's default
	Level       string     `json:"level,omitempty"`       // event rules: their alerts' level; default warning
	Fingerprint []string   `json:"fingerprint,omitempty"` // event fields that make the signature instead of the default
	StackDepth  int        `json:"stack_depth,omitempty"` // frames in the default signature; 0 means the alerter's default
	Ignore      bool       `json:"ignore,omitempty"`      // matching events make no alert

	Versioned
}

// EventMatch selects events for an event rule; empty fields match everything.
type EventMatch struct {
	Type       string            `json:"type,omitempty"`
	Name       string            `json:"name,omitempty"` // regular expression on the class or breaker name
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Condition is one test on a metric. A level without a threshold does not apply to the
// condition's rule: a rule reaches alarm only when every condition has an alarm threshold.
type Condition struct {
	Metric   string   `json:"metric"`
	Op       string   `json:"op"` // > >= < <=
	Baseline string   `json:"baseline,omitempty"`
	Warning  *float64 `json:"warning,omitempty"`
	Alarm    *float64 `json:"alarm,omitempty"`
	// MinCount leaves minutes with fewer calls out (one failure in two calls is not 50 %).
	MinCount float64 `json:"min_count,omitempty"`
}

// Strategy assigns rules to where they apply (selectors) and says who hears each level.
type Strategy struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Rules       []string `json:"rules"`
	// Selectors: the strategy applies where any selector matches; none means everywhere.
	Selectors []Selector `json:"selectors,omitempty"`
	// Receivers per level (warning, alarm), by receiver name.
	Receivers map[string][]string `json:"receivers,omitempty"`
	Versioned
}

// Selector matches a domain, service, operation and host; an empty field or "*" matches
// anything, a trailing "*" matches a prefix. Metric points carry no host: a selector with a
// host applies to events and self-alerts only.
type Selector struct {
	Domain    string `json:"domain,omitempty"`
	Service   string `json:"service,omitempty"`
	Operation string `json:"operation,omitempty"`
	Host      string `json:"host,omitempty"`
}

// Matches reports whether the selector covers the given place.
func (s Selector) Matches(domain, service, operation, host string) bool {
	return glob(s.Domain, domain) && glob(s.Service, service) && glob(s.Operation, operation) && glob(s.Host, host)
}

// Applies reports whether the strategy covers the given place.
func (s *Strategy) Applies(domain, service, operation, host string) bool {
	if len(s.Selectors) == 0 {
		return true
	}
	for _, sel := range s.Selectors {
		if sel.Matches(domain, service, operation, host) {
			return true
		}
	}
	return false
}

func glob(pattern, v string) bool {
	switch {
	case pattern == "" || pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(v, pattern[:len(pattern)-1])
	}
	return pattern == v
}

// Duration is a time.Duration written as "10s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64 // plain nanoseconds also read
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: want a string like \"10s\": %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// CheckName validates a rule, strategy or receiver name.
func CheckName(what, name string) error {
	if !validName.MatchString(name) {
		return invalid("%s name %q: want 1-128 letters, digits, _ . : - (starting with a letter or digit)", what, name)
	}
	return nil
}

// Validate checks a rule and reports the first problem.
func (r *Rule) Validate() error {
	if err := CheckName("rule", r.Name); err != nil {
		return err
	}
	switch r.Kind {
	case RuleMetric:
		if len(r.Conditions) == 0 {
			return invalid("rule %s: a metric rule needs at least one condition", r.Name)
		}
		if r.For < 0 || r.For > 60 {
			return invalid("rule %s: for %d: want 0-60 minutes", r.Name, r.For)
		}
		warn := 0
		for i, c := range r.Conditions {
			if err := c.validate(); err != nil {
				return invalid("rule %s condition %d: %v", r.Name, i, err)
			}
			if c.Warning != nil {
				warn++
			}
		}
		if warn != 0 && warn != len(r.Conditions) {
			return invalid("rule %s: either every condition has a warning threshold or none has", r.Name)
		}
	case RuleEvent:
		if len(r.Conditions) > 0 {
			return invalid("rule %s: an event rule has no conditions", r.Name)
		}
		if r.Match.Name != "" {
			if _, err := regexp.Compile(r.Match.Name); err != nil {
				return invalid("rule %s: match name: %v", r.Name, err)
			}
		}
		if r.Window < 0 || time.Duration(r.Window) > 24*time.Hour {
			return invalid("rule %s: window %v: want 0-24h", r.Name, time.Duration(r.Window))
		}
		if r.Level != "" && r.Level != LevelWarning && r.Level != LevelAlarm {
			return invalid("rule %s: level %q: want warning or alarm", r.Name, r.Level)
		}
		for _, f := range r.Fingerprint {
			if !FingerprintField(f) {
				return invalid("rule %s: fingerprint field %q: want one of %s or attr:<name>", r.Name, f, strings.Join(fingerprintFields, ", "))
			}
		}
		if r.StackDepth < 0 || r.StackDepth > 50 {
			return invalid("rule %s: stack depth %d: want 0-50", r.Name, r.StackDepth)
		}
	default:
		return invalid("rule %s: kind %q: want metric or event", r.Name, r.Kind)
	}
	return nil
}

var fingerprintFields = []string{"service", "domain", "type", "name", "message", "stack", "operation", "host"}

// FingerprintField reports whether f names an event field a fingerprint may use.
func FingerprintField(f string) bool {
	if name, ok := strings.CutPrefix(f, "attr:"); ok {
		return name != ""
	}
	for _, ff := range fingerprintFields {
		if f == ff {
			return true
		}
	}
	return false
}

func (c *Condition) validate() error {
	known := false
	for _, m := range Metrics {
		known = known || c.Metric == m
	}
	if !known {
		return fmt.Errorf("metric %q: want one of %s", c.Metric, strings.Join(Metrics, ", "))
	}
	switch c.Op {
	case ">", ">=", "<", "<=":
	default:
		return fmt.Errorf("op %q: want >, >=, < or <=", c.Op)
	}
	switch c.Baseline {
	case "", BaselineYesterday, BaselineLastWeek:
	default:
		return fmt.Errorf("baseline %q: want yesterday or last_week", c.Baseline)
	}
	if c.Warning == nil && c.Alarm == nil {
		return fmt.Errorf("no threshold: want warning, alarm or both")
	}
	for _, t := range []*float64{c.Warning, c.Alarm} {
		if t != nil && (math.IsNaN(*t) || math.IsInf(*t, 0)) {
			return fmt.Errorf("threshold %v: want a finite number", *t)
		}
	}
	if c.Warning != nil && c.Alarm != nil {
		up := c.Op[0] == '>'
		if (up && *c.Alarm < *c.Warning) || (!up && *c.Alarm > *c.Warning) {
			return fmt.Errorf("alarm threshold %v is easier to reach than warning %v", *c.Alarm, *c.Warning)
		}
	}
	if c.MinCount < 0 {
		return fmt.Errorf("min_count %v: want ≥ 0", c.MinCount)
	}
	return nil
}

// Holds reports whether value passes the condition's threshold for level (false when the
// condition has no threshold for it).
func (c *Condition) Holds(level string, value float64) (bool, float64) {
	t := c.Warning
	if level == LevelAlarm {
		t = c.Alarm
	}
	if t == nil || math.IsNaN(value) {
		return false, 0
	}
	switch c.Op {
	case ">":
		return value > *t, *t
	case ">=":
		return value >= *t, *t
	case "<":
		return value < *t, *t
	default:
		return value <= *t, *t
	}
}

// Validate checks a strategy (the rules it names must exist: the caller checks that).
func (s *Strategy) Validate() error {
	if err := CheckName("strategy", s.Name); err != nil {
		return err
	}
	if len(s.Rules) == 0 {
		return invalid("strategy %s: names no rule", s.Name)
	}
	for _, r := range s.Rules {
		if err := CheckName("rule", r); err != nil {
			return invalid("strategy %s: %v", s.Name, err)
		}
	}
	for lvl, rs := range s.Receivers {
		if lvl != LevelWarning && lvl != LevelAlarm {
			return invalid("strategy %s: receivers for level %q: want warning or alarm", s.Name, lvl)
		}
		for _, r := range rs {
			if err := CheckName("receiver", r); err != nil {
				return invalid("strategy %s: %v", s.Name, err)
			}
		}
	}
	return nil
}

// Silence mutes the notifications of alerts whose labels match every matcher, from
// StartsAt until EndsAt. Silenced alerts are still stored, marked with the silence.
type Silence struct {
	ID        string    `json:"id"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment,omitempty"`
}

// Matcher tests one label: equal to Value, or matching it as an anchored regular expression;
// Negative inverts the test.
type Matcher struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Regex    bool   `json:"regex,omitempty"`
	Negative bool   `json:"negative,omitempty"`
}

// Validate checks a silence.
func (s *Silence) Validate() error {
	if len(s.Matchers) == 0 {
		return invalid("silence: needs at least one matcher (a silence of everything is a mistake)")
	}
	for _, m := range s.Matchers {
		if m.Name == "" {
			return invalid("silence: matcher without a label name")
		}
		if m.Regex {
			if _, err := regexp.Compile("^(?:" + m.Value + ")$"); err != nil {
				return invalid("silence: matcher %s: %v", m.Name, err)
			}
		}
	}
	if s.EndsAt.IsZero() || !s.EndsAt.After(s.StartsAt) {
		return invalid("silence: ends_at must be after starts_at")
	}
	if s.CreatedBy == "" {
		return invalid("silence: created_by is required")
	}
	return nil
}

// Active reports whether the silence mutes at now.
func (s *Silence) Active(now time.Time) bool {
	return !now.Before(s.StartsAt) && now.Before(s.EndsAt)
}

// Matches reports whether every matcher holds on labels (a missing label is "").
func (s *Silence) Matches(labels map[string]string) bool {
	for _, m := range s.Matchers {
		v := labels[m.Name]
		ok := v == m.Value
		if m.Regex {
			re, err := regexp.Compile("^(?:" + m.Value + ")$")
			ok = err == nil && re.MatchString(v)
		}
		if ok == m.Negative {
			return false
		}
	}
	return true
}
