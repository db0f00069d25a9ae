package alertstore

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

func TestStoredEventJSONRoundTrip(t *testing.T) {
	e := StoredEvent{ID: "mercury.events-1-7", Signature: "abc", Event: schemas.Event{
		TimeUnixNano: time.Date(2026, 12, 3, 8, 0, 0, 123, time.UTC).UnixNano(), Service: "pay", Type: "exception",
		Name: "E", Message: "m", TraceID: schemas.TraceID{0xab}, SpanID: schemas.SpanID{0xcd},
		Attributes: []schemas.KV{{Key: "route", Value: "/pay"}}}}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"trace_id":"ab000000000000000000000000000000"`) || !strings.Contains(string(b), `"attributes":{"route":"/pay"}`) {
		t.Fatalf("API form: %s", b)
	}
	var back StoredEvent
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, e) {
		t.Fatalf("round trip:\n%+v\n%+v", back, e)
	}
}

func TestRuleValidation(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	for name, r := range map[string]Rule{
		"bad name":        {Name: "a b", Kind: RuleMetric, Conditions: []Condition{{Metric: "qps", Op: ">", Warning: f(1)}}},
		"no kind":         {Name: "r"},
		"unknown metric":  {Name: "r", Kind: RuleMetric, Conditions: []Condition{{Metric: "p42", Op: ">", Warning: f(1)}}},
		"bad op":          {Name: "r", Kind: RuleMetric, Conditions: []Condition{{Metric: "qps", Op: "!=", Warning: f(1)}}},
		"no threshold":    {Name: "r", Kind: RuleMetric, Conditions: []Condition{{Metric: "qps", Op: ">"}}},
		"alarm easier":    {Name: "r", Kind: RuleMetric, Conditions: []Condition{{Metric: "qps", Op: ">", Warning: f(10), Alarm: f(5)}}},
		"bad baseline":    {Name: "r", Kind: RuleMetric, Conditions: []Condition{{Metric: "qps", Op: ">", Warning: f(1), Baseline: "lastyear"}}},
		"mixed warnings":  {Name: "r", Kind: RuleMetric, Conditions: []Condition{{Metric: "qps", Op: ">", Warning: f(1)}, {Metric: "avg", Op: ">", Alarm: f(1)}}},
		"for too long":    {Name: "r", Kind: RuleMetric, For: 61, Conditions: []Condition{{Metric: "qps", Op: ">", Warning: f(1)}}},
		"event regexp":    {Name: "r", Kind: RuleEvent, Match: EventMatch{Name: "("}},
		"event level":     {Name: "r", Kind: RuleEvent, Level: "critical"},
		"event field":     {Name: "r", Kind: RuleEvent, Fingerprint: []string{"color"}},
		"event condition": {Name: "r", Kind: RuleEvent, Conditions: []Condition{{Metric: "qps", Op: ">", Warning: f(1)}}},
	} {
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ok := Rule{Name: "r", Kind: RuleEvent, Fingerprint: []string{"service", "attr:route"}, Window: Duration(30 * time.Second)}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid event rule: %v", err)
	}
}

func TestSilenceMatching(t *testing.T) {
	s := Silence{Matchers: []Matcher{{Name: "service", Value: "pay.*", Regex: true}, {Name: "level", Value: "alarm", Negative: true}},
		StartsAt: time.Unix(100, 0), EndsAt: time.Unix(200, 0), CreatedBy: "ops"}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for labels, want := range map[[2]string]bool{{"payment", "warning"}: true, {"payment", "alarm"}: false, {"order", "warning"}: false} {
		if got := s.Matches(map[string]string{"service": labels[0], "level": labels[1]}); got != want {
			t.Errorf("%v: %v, want %v", labels, got, want)
		}
	}
	if s.Active(time.Unix(99, 0)) || !s.Active(time.Unix(100, 0)) || s.Active(time.Unix(200, 0)) {
		t.Error("active window is [starts, ends)")
	}
}

func TestDurationJSON(t *testing.T) {
	var r Rule
	if err := json.Unmarshal([]byte(`{"name":"x","kind":"event","window":"30s"}`), &r); err != nil || time.Duration(r.Window) != 30*time.Second {
		t.Fatalf("window: %v %v", r.Window, err)
	}
	if err := json.Unmarshal([]byte(`{"window":"soon"}`), &r); err == nil {
		t.Fatal("a bad duration was accepted")
	}
}
