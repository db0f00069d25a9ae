package tracestore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

func TestValidateMessages(t *testing.T) {
	cases := []struct {
		q    tracestore.Query
		want string
	}{
		{tracestore.Query{}, "name a business key, a service, an error type or an event"},
		{tracestore.Query{Service: "s", Limit: 1001}, "limit 1001 outside 0..1000"},
		{tracestore.Query{Service: "s", MinDuration: -1}, "negative duration"},
		{tracestore.Query{Service: "s", MinDuration: 2, MaxDuration: 1}, "max duration 1ns below min duration 2ns"},
		{tracestore.Query{Operation: "op"}, `operation "op" needs a service`},
		{tracestore.Query{Service: "s", Dyed: 9}, "Dyed(9)"},
	}
	for _, c := range cases {
		err := c.q.Validate()
		if !errors.Is(err, tracestore.ErrInvalidQuery) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.q, err, c.want)
		}
	}
	ok := tracestore.Query{BusinessKeys: []schemas.KV{{Key: "order", Value: `") OR 1=1`}}, Limit: 1000}
	if err := ok.Validate(); err != nil {
		t.Errorf("injection-looking value must be valid (it is matched literally): %v", err)
	}
	if ok.EffectiveLimit() != 1000 || (&tracestore.Query{}).EffectiveLimit() != tracestore.DefaultLimit {
		t.Error("EffectiveLimit")
	}
}

func TestParse(t *testing.T) {
	kv, err := tracestore.ParseBusinessKey("order=a=b")
	if err != nil || kv.Key != "order" || kv.Value != "a=b" {
		t.Fatalf("ParseBusinessKey: %v %v", kv, err)
	}
	for _, bad := range []string{"order", "=v", ""} {
		if _, err := tracestore.ParseBusinessKey(bad); !errors.Is(err, tracestore.ErrInvalidQuery) {
			t.Errorf("ParseBusinessKey(%q) = %v", bad, err)
		}
	}
	for s, want := range map[string]tracestore.Dyed{"": tracestore.DyedExclude, "include": tracestore.DyedInclude, "only": tracestore.DyedOnly} {
		if d, err := tracestore.ParseDyed(s); err != nil || d != want {
			t.Errorf("ParseDyed(%q) = %v, %v", s, d, err)
		}
	}
	if _, err := tracestore.ParseDyed("all"); !errors.Is(err, tracestore.ErrInvalidQuery) {
		t.Error("ParseDyed(all) accepted")
	}
}

func TestSummarizeWithoutRoot(t *testing.T) {
	var id tracestore.TraceID
	id[0] = 1
	p := schemas.SpanID{9}
	spans := []schemas.Span{
		{TraceID: id, SpanID: schemas.SpanID{2}, ParentSpanID: p, Service: "b", Operation: "late", StartUnixNano: 200, DurationNano: 50},
		{TraceID: id, SpanID: schemas.SpanID{1}, ParentSpanID: p, Service: "a", Operation: "early", StartUnixNano: 100, DurationNano: 10, ErrorType: "Timeout"},
	}
	s := tracestore.Summarize(id, spans)
	if s.RootService != "a" || s.RootOperation != "early" || s.Duration != 150 || s.ErrorCount != 1 || len(s.Services) != 2 {
		t.Fatalf("summary: %+v", s)
	}
}

// gate blocks each write until the other backend's write has started: the two run in
// parallel, or each times out waiting for the other.
type gate struct {
	mu      sync.Mutex
	arrived int
	both    chan struct{}
	err     error
}

func (g *gate) meet(me string) error {
	g.mu.Lock()
	if g.arrived++; g.arrived == 2 {
		close(g.both)
	}
	g.mu.Unlock()
	select {
	case <-g.both:
		return g.err
	case <-time.After(5 * time.Second):
		return errors.New(me + ": the other write never started: writes are not parallel")
	}
}

type gatedIndex struct {
	tracestore.Index // Search is never called
	*gate
}

func (g gatedIndex) IndexSpans(context.Context, []schemas.Span) error { return g.meet("index") }

type gatedRows struct {
	tracestore.Rows // reads are never called
	*gate
}

func (g gatedRows) PutSpans(context.Context, []schemas.Span) error { return g.meet("rows") }

func TestWriteSpansInParallel(t *testing.T) {
	g := &gate{both: make(chan struct{})}
	s := tracestore.New(gatedIndex{gate: g}, gatedRows{gate: g})
	if err := s.WriteSpans(context.Background(), []schemas.Span{{}}); err != nil {
		t.Fatal(err)
	}
	g = &gate{both: make(chan struct{}), err: retry.Retryable(errors.New("HTTP 503"))}
	s = tracestore.New(gatedIndex{gate: g}, gatedRows{gate: g})
	if err := s.WriteSpans(context.Background(), []schemas.Span{{}}); !retry.IsRetryable(err) {
		t.Fatalf("a failed backend must fail the write, retryably: %v", err)
	}
}
