package esstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/esstore"
	"github.com/mercury-apm/mercury/storage/esstore/esfake"
	"github.com/mercury-apm/mercury/storage/storetest"
	"github.com/mercury-apm/mercury/storage/tracestore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fastRetry = retry.Backoff{Attempts: 4, Min: time.Millisecond, Max: 5 * time.Millisecond}

func fake(t *testing.T) *esfake.Server {
	srv := esfake.New()
	t.Cleanup(srv.Close)
	return srv
}

func open(t *testing.T, cfg esstore.Config) *esstore.Store {
	t.Helper()
	if cfg.Backoff == (retry.Backoff{}) {
		cfg.Backoff = fastRetry
	}
	s, err := esstore.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// backends: the fake always, a real cluster when MERCURY_TEST_ES_URL is set.
func backends(t *testing.T, run func(t *testing.T, cfg func(t *testing.T) esstore.Config)) {
	t.Run("fake", func(t *testing.T) {
		run(t, func(t *testing.T) esstore.Config { return esstore.Config{Addresses: []string{fake(t).URL}} })
	})
	t.Run("real", func(t *testing.T) {
		u := os.Getenv("MERCURY_TEST_ES_URL")
		if u == "" {
			t.Skip("MERCURY_TEST_ES_URL not set: no real Elasticsearch to test against")
		}
		run(t, func(*testing.T) esstore.Config { return esstore.Config{Addresses: []string{u}, Refresh: "wait_for"} })
	})
}

func TestIndex(t *testing.T) {
	backends(t, func(t *testing.T, cfg func(*testing.T) esstore.Config) {
		storetest.RunIndex(t, func(t *testing.T) tracestore.Index { return open(t, cfg(t)) })
	})
}

func TestRows(t *testing.T) {
	backends(t, func(t *testing.T, cfg func(*testing.T) esstore.Config) {
		storetest.RunRows(t, func(t *testing.T) tracestore.Rows { return open(t, cfg(t)) })
	})
}

func TestStore(t *testing.T) {
	backends(t, func(t *testing.T, cfg func(*testing.T) esstore.Config) {
		storetest.RunStore(t, func(t *testing.T) *tracestore.Store {
			s := open(t, cfg(t))
			return tracestore.New(s, s)
		})
	})
}

func TestRetention(t *testing.T) {
	backends(t, func(t *testing.T, cfg func(*testing.T) esstore.Config) {
		s := open(t, cfg(t))
		storetest.RunRetention(t, tracestore.New(s, s), s)
	})
}

func TestIndexLayout(t *testing.T) {
	srv := fake(t)
	s := open(t, esstore.Config{Addresses: []string{srv.URL}})
	f := storetest.NewFixture()
	f.Spans[0].Domain = "Shop/EU *"
	if err := s.WriteSpans(context.Background(), f.Spans); err != nil {
		t.Fatal(err)
	}
	want := []string{"mercury-shadow-spans-shop-2026.11.20", "mercury-spans-shop-2026.11.20", "mercury-spans-shop-2026.11.21", "mercury-spans-shop_eu__-2026.11.20"}
	if got := srv.Indices(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("indices %v, want %v", got, want)
	}
	var tmpl struct {
		IndexPatterns []string `json:"index_patterns"`
		Template      struct {
			Mappings struct {
				Properties map[string]struct {
					Type string `json:"type"`
				} `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(srv.Template(esstore.TemplateName), &tmpl); err != nil {
		t.Fatal(err)
	}
	if p := tmpl.Template.Mappings.Properties; p["bk"].Type != "flattened" || p["trace_id"].Type != "keyword" || len(tmpl.IndexPatterns) != 2 {
		t.Fatalf("template: %+v", tmpl)
	}
}

// User text only appears as JSON string values of term filters.
func TestSearchDSLIsStructured(t *testing.T) {
	srv := fake(t)
	s := open(t, esstore.Config{Addresses: []string{srv.URL}})
	q := tracestore.Query{BusinessKeys: []schemas.KV{{Key: "order", Value: `") OR 1=1`}}, Service: "*:*",
		Start: storetest.Midnight.Add(-time.Hour), End: storetest.Midnight.Add(time.Hour)}
	if _, err := s.Search(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	body, indices := srv.LastSearch()
	for _, bad := range []string{"query_string", "simple_query_string", "wildcard", "regexp", "prefix", "script"} {
		if strings.Contains(string(body), bad) {
			t.Fatalf("search body uses %s: %s", bad, body)
		}
	}
	if !strings.Contains(string(body), `{"term":{"bk.order":"\") OR 1=1"}}`) || !strings.Contains(string(body), `{"term":{"service":"*:*"}}`) {
		t.Fatalf("body: %s", body)
	}
	if want := "mercury-spans-*-2026.11.20,mercury-spans-*-2026.11.21"; strings.Join(indices, ",") != want {
		t.Fatalf("indices %v, want %s", indices, want)
	}
}

func TestMissingIndex(t *testing.T) {
	srv := fake(t)
	s := open(t, esstore.Config{Addresses: []string{srv.URL}})
	// Nothing written: every per-day index is missing; ignore_unavailable makes that empty.
	refs, err := s.Search(context.Background(), tracestore.Query{Service: "x", Start: storetest.Midnight, End: storetest.Midnight})
	if err != nil || len(refs) != 0 {
		t.Fatalf("Search on missing indices: %v, %v", refs, err)
	}
	// And the fake does answer 404 without it, as the real server does.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mercury-spans-x-2026.11.21/_search", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("missing index: HTTP %d, want 404", resp.StatusCode)
	}
}

func TestRetriesThenSucceeds(t *testing.T) {
	ctx := context.Background()
	cases := map[string]func(*esfake.Server){
		"whole request 429": func(s *esfake.Server) { s.FailRequests(5, http.StatusTooManyRequests) },
		"whole request 503": func(s *esfake.Server) { s.FailRequests(5, http.StatusServiceUnavailable) },
		"item 429":          func(s *esfake.Server) { s.FailItems(3, http.StatusTooManyRequests, "es_rejected_execution_exception") },
		"item 503":          func(s *esfake.Server) { s.FailItems(2, http.StatusServiceUnavailable, "unavailable_shards_exception") },
		"extra reply items": func(s *esfake.Server) { s.ExtraItems(3) },
	}
	for name, inject := range cases {
		t.Run(name, func(t *testing.T) {
			srv := fake(t)
			s := open(t, esstore.Config{Addresses: []string{srv.URL}})
			f := storetest.NewFixture()
			inject(srv)
			if err := s.WriteSpans(ctx, f.Spans); err != nil {
				t.Fatalf("WriteSpans: %v", err)
			}
			spans, err := s.GetTrace(ctx, f.T1)
			if err != nil || len(spans) != 3 {
				t.Fatalf("GetTrace: %d spans, %v", len(spans), err)
			}
		})
	}
	t.Run("search 429", func(t *testing.T) {
		srv := fake(t)
		s := open(t, esstore.Config{Addresses: []string{srv.URL}})
		srv.FailRequests(6, http.StatusTooManyRequests)
		if _, err := s.Search(ctx, tracestore.Query{Service: "x"}); err != nil {
			t.Fatalf("Search: %v", err)
		}
	})
}

func TestErrorClassification(t *testing.T) {
	ctx := context.Background()
	t.Run("mapper_parsing_exception is permanent", func(t *testing.T) {
		srv := fake(t)
		s := open(t, esstore.Config{Addresses: []string{srv.URL}, Workers: 1})
		srv.FailItems(1, http.StatusBadRequest, "mapper_parsing_exception")
		err := s.WriteSpans(ctx, storetest.NewFixture().Spans)
		if !errors.Is(err, retry.ErrPermanent) || retry.IsRetryable(err) || !strings.Contains(err.Error(), "mapper_parsing_exception") {
			t.Fatalf("got %v, want permanent mapper_parsing_exception", err)
		}
		if n := srv.Calls("POST _bulk"); n != 1 {
			t.Fatalf("permanent item error retried: %d bulk calls", n)
		}
	})
	t.Run("persistent 429 stays retryable", func(t *testing.T) {
		srv := fake(t)
		s := open(t, esstore.Config{Addresses: []string{srv.URL}})
		srv.FailItems(1000, http.StatusTooManyRequests, "es_rejected_execution_exception")
		if err := s.WriteSpans(ctx, storetest.NewFixture().Spans); !retry.IsRetryable(err) {
			t.Fatalf("got %v, want retryable", err)
		}
	})
	t.Run("search 400 is permanent", func(t *testing.T) {
		srv := fake(t)
		s := open(t, esstore.Config{Addresses: []string{srv.URL}})
		srv.FailRequests(1, http.StatusBadRequest)
		if _, err := s.Search(ctx, tracestore.Query{Service: "x"}); !errors.Is(err, retry.ErrPermanent) {
			t.Fatalf("got %v, want permanent", err)
		}
	})
	t.Run("not Elasticsearch", func(t *testing.T) {
		srv := fake(t)
		srv.OmitProductHeader()
		_, err := esstore.New(ctx, esstore.Config{Addresses: []string{srv.URL}, Backoff: fastRetry})
		if !errors.Is(err, retry.ErrPermanent) {
			t.Fatalf("got %v, want permanent product-check error", err)
		}
	})
	t.Run("invalid queries", func(t *testing.T) {
		srv := fake(t)
		s := open(t, esstore.Config{Addresses: []string{srv.URL}})
		before := srv.Calls("POST _search")
		for _, q := range storetest.InvalidQueries() {
			if _, err := s.Search(ctx, q); !errors.Is(err, tracestore.ErrInvalidQuery) {
				t.Fatalf("Search(%+v) = %v", q, err)
			}
		}
		if srv.Calls("POST _search") != before {
			t.Fatal("invalid query reached the server")
		}
	})
}

// More (service, minute) buckets than one composite page: CountSpans follows after_key to
// the end, and counts every bucket once.
func TestCountSpansPages(t *testing.T) {
	ctx := context.Background()
	srv := fake(t)
	s := open(t, esstore.Config{Addresses: []string{srv.URL}})
	base := storetest.Midnight.Add(-24 * time.Hour)
	const n = 10001 // one page holds 10,000 buckets
	spans := make([]schemas.Span, n)
	for i := range spans {
		spans[i] = schemas.Span{TraceID: schemas.TraceID{byte(i >> 8), byte(i), 0xcc}, SpanID: schemas.SpanID{1}, Domain: "shop",
			Service: []string{"a", "b"}[i%2], StartUnixNano: base.Add(time.Duration(i/2) * time.Minute).UnixNano(), SampleRate: 1}
	}
	if err := s.WriteSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	before := srv.Calls("POST _search")
	got, err := s.CountSpans(ctx, base, base.Add(time.Duration(n)*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if calls := srv.Calls("POST _search") - before; calls < 2 {
		t.Fatalf("%d searches: the buckets fit in one page, the test checks nothing", calls)
	}
	if len(got) != n {
		t.Fatalf("%d buckets, want %d", len(got), n)
	}
	for i, c := range got {
		svc, minute := "a", base.Unix()+int64(i)*60
		if i > n/2 {
			svc, minute = "b", base.Unix()+int64(i-n/2-1)*60
		}
		if c.Service != svc || c.Minute != minute || c.Spans != 1 {
			t.Fatalf("bucket %d: %+v, want %s at %d", i, c, svc, minute)
		}
	}
}

// The fake refuses composite aggregations the real server refuses, with a 400.
func TestFakeCompositeErrors(t *testing.T) {
	srv := fake(t)
	for name, comp := range map[string]string{
		"no sources":           `{"sources":[]}`,
		"unknown source type":  `{"sources":[{"s":{"histogramx":{"field":"start"}}}]}`,
		"no interval":          `{"sources":[{"m":{"date_histogram":{"field":"start"}}}]}`,
		"bad interval":         `{"sources":[{"m":{"date_histogram":{"field":"start","fixed_interval":"1month"}}}]}`,
		"no field":             `{"sources":[{"s":{"terms":{}}}]}`,
		"after of other shape": `{"sources":[{"s":{"terms":{"field":"service"}}}],"after":{"s":"a","m":1}}`,
		"zero size":            `{"size":0,"sources":[{"s":{"terms":{"field":"service"}}}]}`,
		"unknown option":       `{"sources":[{"s":{"terms":{"field":"service"}}}],"bogus":1}`,
	} {
		body := `{"size":0,"aggs":{"c":{"composite":` + comp + `}}}`
		resp, err := http.Post(srv.URL+"/_search", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct{ Type string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || e.Error.Type != "parsing_exception" {
			t.Errorf("%s: HTTP %d %q, want 400 parsing_exception", name, resp.StatusCode, e.Error.Type)
		}
	}
}
