package degrade

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

var errUpstream = errors.New("upstream 500")

func TestManualWithFallbacks(t *testing.T) {
	var changes []string
	s, err := New(Config{Fallback: Fallback{Kind: Static, Body: "{}", ContentType: "application/json"},
		OnChange: func(on bool, why string) { changes = append(changes, fmt.Sprintf("%v %s", on, why)) }})
	if err != nil {
		t.Fatal(err)
	}
	if done, err := s.Allow(); err != nil {
		t.Fatal(err)
	} else {
		done(nil)
	}
	if _, err := s.Apply(Setting{On: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allow(); !errors.Is(err, ErrDegraded) {
		t.Fatalf("err = %v", err)
	}
	get := httptest.NewRequest("GET", "/a", nil)
	rec := httptest.NewRecorder()
	s.WriteFallback(rec, get)
	if rec.Code != 200 || rec.Body.String() != "{}" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("static fallback: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	// Cache fallback without a remembered response is an error…
	s.Apply(Setting{On: true, Fallback: &Fallback{Kind: Cache}})
	rec = httptest.NewRecorder()
	s.WriteFallback(rec, get)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("empty cache: %d", rec.Code)
	}
	// …and with one, that response.
	s.Cache().Put(get, 200, http.Header{"Etag": {"x"}}, []byte("good"))
	rec = httptest.NewRecorder()
	s.WriteFallback(rec, get)
	if rec.Code != 200 || rec.Body.String() != "good" || rec.Header().Get("Etag") != "x" {
		t.Fatalf("cache fallback: %d %q", rec.Code, rec.Body)
	}
	s.Apply(Setting{On: false})
	if _, err := s.Allow(); err != nil {
		t.Fatal("still degraded")
	}
	if fmt.Sprint(changes) != "[true manual false manual-off]" {
		t.Fatalf("changes %v", changes)
	}
	if _, err := s.Apply(Setting{Fallback: &Fallback{Kind: "teapot"}}); err == nil {
		t.Fatal("bad fallback kind accepted")
	}
}

func TestAutoTripsAfterNSecondsAndRecovers(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	var changes []string
	s, err := New(Config{Clock: clk, Auto: &AutoConfig{ErrorRate: 0.5, TimeoutRate: 0.3, For: 3 * time.Second, MinRequests: 10, RecoverAfter: 10 * time.Second},
		OnChange: func(on bool, why string) { changes = append(changes, fmt.Sprintf("%v %s", on, why)) }})
	if err != nil {
		t.Fatal(err)
	}
	second := func(n, bad int, badErr error) error {
		var last error
		for i := range n {
			done, err := s.Allow()
			if err != nil {
				last = err
				continue
			}
			if i < bad {
				done(badErr)
			} else {
				done(nil)
			}
		}
		clk.Advance(time.Second)
		return last
	}
	second(20, 12, errUpstream) // bad
	second(20, 12, errUpstream) // bad
	second(20, 2, errUpstream)  // good: breaks the streak
	second(20, 12, errUpstream)
	second(20, 12, errUpstream)
	if s.Status().On {
		t.Fatal("tripped after 2 bad seconds")
	}
	second(20, 7, context.DeadlineExceeded) // 35 % timeouts: third bad second
	// The trip is judged when the next second starts.
	if err := second(20, 0, nil); !errors.Is(err, ErrDegraded) || !s.Status().Auto {
		t.Fatalf("not auto-degraded: %v %+v", err, s.Status())
	}
	clk.Advance(8 * time.Second) // 9 s since the trip
	if _, err := s.Allow(); err == nil {
		t.Fatal("recovered early")
	}
	clk.Advance(time.Second)
	if done, err := s.Allow(); err != nil {
		t.Fatal("did not recover")
	} else {
		done(nil)
	}
	if fmt.Sprint(changes) != "[true auto false recovered]" {
		t.Fatalf("changes %v", changes)
	}
}

func TestAutoIgnoresQuietSeconds(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	s, _ := New(Config{Clock: clk, Auto: &AutoConfig{ErrorRate: 0.5, For: time.Second, MinRequests: 10}})
	for range 5 {
		for range 5 { // 100 % errors but only 5 requests per second
			done, _ := s.Allow()
			done(errUpstream)
		}
		clk.Advance(time.Second)
	}
	if s.Status().On {
		t.Fatal("tripped on a quiet route")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Fallback: Fallback{Kind: "x"}},
		{Fallback: Fallback{Status: 99}},
		{Auto: &AutoConfig{}},
		{Auto: &AutoConfig{ErrorRate: 2}},
		{Auto: &AutoConfig{ErrorRate: 0.5, For: time.Millisecond}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
