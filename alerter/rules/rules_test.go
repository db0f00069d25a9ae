package rules

import (
	"math"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

const m0 = int64(1_764_748_800) // a minute start, 2025-12-03 08:00 UTC

func pt(minute int64, count, errs, avgMs float64) schemas.MetricPoint {
	return schemas.MetricPoint{SeriesID: "pay|POST /pay", Service: "pay", MinuteUnix: minute, Count: count, Errors: errs,
		SumNano: count * avgMs * 1e6, Revision: 1}
}

func f(v float64) *float64 { return &v }

// fixedQuantiles answers q·scale nanoseconds, so p99 = 0.99·scale.
type fixedQuantiles float64

func (s fixedQuantiles) Quantile(q float64) float64 { return q * float64(s) }

func TestValue(t *testing.T) {
	p := pt(m0, 120, 6, 25)
	q := func(*schemas.MetricPoint) (Quantiles, error) { return fixedQuantiles(100e6), nil }
	for m, want := range map[string]float64{"count": 120, "qps": 2, "errors": 6, "error_rate": 0.05, "avg": 25, "p50": 50, "p90": 90, "p99": 99} {
		got, err := Value(m, &p, q)
		if err != nil || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v %v, want %v", m, got, err, want)
		}
	}
	empty := pt(m0, 0, 0, 0)
	if v, _ := Value("error_rate", &empty, q); !math.IsNaN(v) {
		t.Errorf("error rate of a minute without calls = %v, want NaN", v)
	}
	if _, err := Value("p99", &p, nil); err != ErrNoQuantiles {
		t.Errorf("p99 without a quantile reader: %v", err)
	}
}

func eval(t *testing.T, h *MemoryHistory, r alertstore.Rule, at int64) Result {
	t.Helper()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &Evaluator{History: h}
	res, err := e.Evaluate(t.Context(), &r, "pay|POST /pay", at, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestConsecutiveMinutes(t *testing.T) {
	h := NewMemoryHistory(8 * 24 * time.Hour)
	r := alertstore.Rule{Name: "slow", Kind: alertstore.RuleMetric, For: 3,
		Conditions: []alertstore.Condition{{Metric: "avg", Op: ">", Warning: f(100), Alarm: f(500)}}}
	for i, avg := range []float64{150, 150, 50, 150, 150, 600, 600, 600} {
		h.Put(pt(m0+int64(60*i), 100, 0, avg))
	}
	for i, want := range []string{"", "", "", "", "", "warning", "warning", "alarm"} {
		if got := eval(t, h, r, m0+int64(60*i)).Level; got != want {
			t.Errorf("minute %d: level %q, want %q", i, got, want)
		}
	}
	if res := eval(t, h, r, m0+7*60); res.Value != 600 || res.Threshold != 500 {
		t.Errorf("alarm result %+v", res)
	}
	// A minute with no point is a minute without calls: the latency rule does not hold.
	if got := eval(t, h, r, m0+10*60).Level; got != "" {
		t.Errorf("after two quiet minutes: %q", got)
	}
}

func TestBaselines(t *testing.T) {
	h := NewMemoryHistory(8 * 24 * time.Hour)
	day, week := int64(24*3600), int64(7*24*3600)
	r := alertstore.Rule{Name: "err-vs-yesterday", Kind: alertstore.RuleMetric, For: 2,
		Conditions: []alertstore.Condition{{Metric: "error_rate", Op: ">", Baseline: alertstore.BaselineYesterday, Warning: f(3)}}}
	// Yesterday 1 % errors; today 5 % then 2 %.
	for i := range 3 {
		h.Put(pt(m0-day+int64(60*i), 100, 1, 10))
	}
	h.Put(pt(m0, 100, 5, 10))
	h.Put(pt(m0+60, 100, 5, 10))
	h.Put(pt(m0+120, 100, 2, 10))
	if res := eval(t, h, r, m0+60); res.Level != alertstore.LevelWarning || math.Abs(res.Value-5) > 1e-9 {
		t.Errorf("5×yesterday for 2 minutes: %+v", res)
	}
	if got := eval(t, h, r, m0+120).Level; got != "" {
		t.Errorf("2×yesterday: %q, want clear", got)
	}
	// No stored baseline minute: no ratio, no alert.
	if got := eval(t, h, r, m0+180).Level; got != "" {
		t.Errorf("without yesterday's point: %q", got)
	}
	// Last week had no errors: any error now is above any ratio.
	wr := alertstore.Rule{Name: "err-vs-week", Kind: alertstore.RuleMetric,
		Conditions: []alertstore.Condition{{Metric: "errors", Op: ">", Baseline: alertstore.BaselineLastWeek, Warning: f(10)}}}
	h.Put(pt(m0-week, 100, 0, 10))
	if got := eval(t, h, wr, m0).Level; got != alertstore.LevelWarning {
		t.Errorf("errors after an error-free week: %q", got)
	}
}

func TestGroupNeedsEveryCondition(t *testing.T) {
	h := NewMemoryHistory(time.Hour)
	r := alertstore.Rule{Name: "busy-and-failing", Kind: alertstore.RuleMetric, Conditions: []alertstore.Condition{
		{Metric: "qps", Op: ">=", Warning: f(1)},
		{Metric: "error_rate", Op: ">", Warning: f(0.1), MinCount: 50},
	}}
	h.Put(pt(m0, 30, 15, 1))       // 0.5 qps, 50 % errors: only one holds
	h.Put(pt(m0+60, 600, 6, 1))    // 10 qps, 1 %: only the other
	h.Put(pt(m0+120, 600, 120, 1)) // both
	for i, want := range []string{"", "", "warning"} {
		if got := eval(t, h, r, m0+int64(60*i)).Level; got != want {
			t.Errorf("minute %d: %q, want %q", i, got, want)
		}
	}
}

func TestMemoryHistoryKeepsHighestRevisionAndForgets(t *testing.T) {
	h := NewMemoryHistory(time.Hour)
	p := pt(m0, 10, 0, 1)
	p.Revision = 2
	h.Put(p)
	old := pt(m0, 5, 0, 1)
	h.Put(old)
	if got, _, _ := h.Point(t.Context(), p.SeriesID, m0); got.Count != 10 {
		t.Errorf("a lower revision replaced a higher one: count %v", got.Count)
	}
	h.Put(pt(m0+7200, 1, 0, 1))
	if _, ok, _ := h.Point(t.Context(), p.SeriesID, m0); ok {
		t.Error("a point older than keep is still held")
	}
}
