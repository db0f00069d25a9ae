package breaker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

type transitions []string

func (tr *transitions) record(from, to State) { *tr = append(*tr, from.String()+"→"+to.String()) }

func TestSREDropProbabilityFollowsFormula(t *testing.T) {
	f := func(k float64, accepts, failures int64) {
		t.Helper()
		clk := clock.NewFake(time.Hour)
		b, err := NewSRE(SREConfig{K: k, MinRequests: 1, Clock: clk, Rand: func() float64 { return 1 }})
		if err != nil {
			t.Fatal(err)
		}
		for i := range accepts + failures {
			done, err := b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			if i < accepts {
				done(nil)
			} else {
				done(ErrUpstream)
			}
		}
		req := float64(accepts + failures)
		want := math.Max(0, (req-k*float64(accepts))/(req+1))
		if got := b.DropProbability(); math.Abs(got-want) > 1e-12 {
			t.Fatalf("K=%v accepts=%d failures=%d: p=%v want %v", k, accepts, failures, got, want)
		}
	}
	f(2, 100, 0) // healthy: 0
	f(2, 50, 50) // requests = K·accepts: still 0
	f(2, 40, 60) // (100−80)/101
	f(1.5, 40, 60)
	f(2, 0, 100) // 100/101
	f(1.5, 10, 90)
}

func TestSREDropsAndCountsDrops(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	var tr transitions
	r := 1.0 // never drop while the failures accumulate
	b, _ := NewSRE(SREConfig{K: 2, MinRequests: 1, Clock: clk, Rand: func() float64 { return r }, OnStateChange: tr.record})
	for range 10 {
		done, _ := b.Allow()
		done(ErrUpstream)
	}
	// p = 10/11: a draw below p drops and the drop is itself a request.
	r = 0.5
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("err = %v", err)
	}
	if got, want := b.DropProbability(), 11.0/12; math.Abs(got-want) > 1e-12 {
		t.Fatalf("p after drop = %v, want %v", got, want)
	}
	if b.State() != Open {
		t.Fatal("not open")
	}
	// The window slides past the failures: throttling stops.
	clk.Advance(11 * time.Second)
	if done, err := b.Allow(); err != nil {
		t.Fatal(err)
	} else {
		done(nil)
	}
	if fmt.Sprint(tr) != "[closed→open open→closed]" {
		t.Fatalf("transitions %v", tr)
	}
}

func TestSREMinRequests(t *testing.T) {
	b, _ := NewSRE(SREConfig{MinRequests: 20, Clock: clock.NewFake(0), Rand: func() float64 { return 0 }})
	for range 20 { // each Allow sees < 20 finished requests
		done, err := b.Allow()
		if err != nil {
			t.Fatal("dropped below min requests")
		}
		done(ErrUpstream)
	}
	if _, err := b.Allow(); err == nil {
		t.Fatal("not dropping at min requests")
	}
}

func TestClassicTransitions(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	var tr transitions
	b, err := NewClassic(ClassicConfig{FailureRatio: 0.5, MinRequests: 4, OpenFor: 5 * time.Second,
		HalfOpenQuota: 2, CloseRatio: 1, Clock: clk, OnStateChange: tr.record})
	if err != nil {
		t.Fatal(err)
	}
	call := func(outcome error) error {
		done, err := b.Allow()
		if err == nil {
			done(outcome)
		}
		return err
	}
	call(nil)
	call(ErrUpstream)
	call(nil)
	if b.State() != Closed {
		t.Fatal("opened below min requests")
	}
	call(ErrUpstream) // 2 of 4 failed = 50 %
	if b.State() != Open {
		t.Fatal("not open at ratio")
	}
	if err := call(nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("open breaker admitted: %v", err)
	}
	clk.Advance(5*time.Second - 1)
	if b.State() != Open {
		t.Fatal("half-open before recovery time")
	}
	clk.Advance(1)
	// Half-open: two probes allowed, a third rejected while they run.
	d1, err1 := b.Allow()
	d2, err2 := b.Allow()
	if err1 != nil || err2 != nil {
		t.Fatal("half-open rejected probes")
	}
	if _, err := b.Allow(); err == nil {
		t.Fatal("half-open exceeded quota")
	}
	d1(nil)
	d2(ErrUpstream) // 1/2 < close ratio 1 → reopen
	if b.State() != Open {
		t.Fatalf("state %v after failed probe", b.State())
	}
	clk.Advance(5 * time.Second)
	call(nil)
	call(nil)
	if b.State() != Closed {
		t.Fatalf("state %v after good probes", b.State())
	}
	want := "[closed→open open→half-open half-open→open open→half-open half-open→closed]"
	if fmt.Sprint(tr) != want {
		t.Fatalf("transitions %v\nwant %v", tr, want)
	}
}

func TestClassicMaxFailuresAndStaleOutcomes(t *testing.T) {
	clk := clock.NewFake(time.Hour)
	b, _ := NewClassic(ClassicConfig{MaxFailures: 2, Clock: clk})
	slow, _ := b.Allow() // admitted while closed, finishes after the trip
	for range 2 {
		d, _ := b.Allow()
		d(ErrUpstream)
	}
	if b.State() != Open {
		t.Fatal("not open after max failures")
	}
	clk.Advance(5 * time.Second)
	if b.State() != HalfOpen {
		t.Fatal("not half-open")
	}
	slow(nil) // a success from the closed era must not close the breaker
	if b.State() != HalfOpen {
		t.Fatal("stale outcome counted")
	}
}

func TestFailureClassifier(t *testing.T) {
	timeoutErr := &net.OpError{Op: "read", Err: &timeoutError{}}
	cases := []struct {
		status int
		err    error
		fail   bool
	}{
		{200, nil, false},
		{404, nil, false},
		{429, nil, false},
		{500, nil, true},
		{503, nil, true},
		{0, context.DeadlineExceeded, true},
		{0, timeoutErr, true},
		{0, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{0, context.Canceled, false},
	}
	for _, c := range cases {
		if got := Failure(c.status, c.err) != nil; got != c.fail {
			t.Errorf("Failure(%d, %v) = %v, want %v", c.status, c.err, got, c.fail)
		}
	}
}

type timeoutError struct{}

func (*timeoutError) Error() string   { return "i/o timeout" }
func (*timeoutError) Timeout() bool   { return true }
func (*timeoutError) Temporary() bool { return true }

func TestConfigErrors(t *testing.T) {
	if _, err := NewSRE(SREConfig{K: 3}); err == nil {
		t.Error("K=3 accepted")
	}
	if _, err := NewSRE(SREConfig{K: 1}); err == nil {
		t.Error("K=1 accepted")
	}
	if _, err := NewClassic(ClassicConfig{}); err == nil {
		t.Error("classic without thresholds accepted")
	}
	if _, err := NewClassic(ClassicConfig{FailureRatio: 1.5}); err == nil {
		t.Error("ratio 1.5 accepted")
	}
}
