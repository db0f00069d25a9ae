package upstream

import (
	"fmt"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

func outlierPool(t *testing.T, n int, o Outlier) (*Pool, *clock.Fake, *[]string) {
	t.Helper()
	var urls []string
	for i := range n {
		urls = append(urls, fmt.Sprintf("http://i%d:1", i))
	}
	clk := clock.NewFake(time.Hour)
	var events []string
	p, err := New(Config{Instances: urls, Outlier: &o, Clock: clk, OnEject: func(in string, ejected bool, why string) {
		events = append(events, fmt.Sprintf("%s %v %s", in, ejected, why))
	}})
	if err != nil {
		t.Fatal(err)
	}
	return p, clk, &events
}

func TestConsecutive5xxEjectsAndTimeBringsBack(t *testing.T) {
	p, clk, events := outlierPool(t, 4, Outlier{Consecutive5xx: 3, BaseEjection: 10 * time.Second, MaxEjectionPercent: 25})
	bad, other := p.instances[0], p.instances[1]
	bad.Report(true)
	bad.Report(true)
	bad.Report(false) // a success breaks the streak
	bad.Report(true)
	bad.Report(true)
	if bad.Ejected() {
		t.Fatal("ejected without 3 failures in a row")
	}
	bad.Report(true)
	if !bad.Ejected() {
		t.Fatal("not ejected after 3 failures in a row")
	}
	for range 20 {
		in, err := p.Pick()
		if err != nil || in == bad {
			t.Fatalf("picked %v, %v", in, err)
		}
		in.Done()
	}
	// 25 % of 4 is one instance: a second bad one stays in.
	for range 3 {
		other.Report(true)
	}
	if other.Ejected() {
		t.Fatal("ejected beyond max_ejection_percent")
	}
	clk.Advance(9 * time.Second)
	p.Sweep()
	if !bad.Ejected() {
		t.Fatal("back before base_ejection")
	}
	clk.Advance(time.Second)
	p.Sweep()
	if bad.Ejected() {
		t.Fatal("still ejected after base_ejection")
	}
	// The second ejection lasts twice as long.
	for range 3 {
		bad.Report(true)
	}
	clk.Advance(19 * time.Second)
	p.Sweep()
	if !bad.Ejected() {
		t.Fatal("second ejection not longer")
	}
	want := "[http://i0:1 true consecutive_5xx http://i0:1 false ejection_ended http://i0:1 true consecutive_5xx]"
	if fmt.Sprint(*events) != want {
		t.Fatalf("events %v", *events)
	}
}

func TestSuccessRateEjection(t *testing.T) {
	// Five judged instances at least: with n of them, one outlier lies at
	// most √(n−1) standard deviations from the mean, so 1.9 needs n ≥ 5.
	p, _, events := outlierPool(t, 6, Outlier{Consecutive5xx: 1000, SuccessRateVolume: 100, MaxEjectionPercent: 50})
	for k, in := range p.instances {
		for i := range 200 {
			// i0 fails 30 %, the others 1 %.
			in.Report(k == 0 && i%10 < 3 || k > 0 && i%100 == 0)
		}
	}
	p.instances[5].total.Store(50) // too little traffic to be judged
	p.Sweep()
	if fmt.Sprint(*events) != "[http://i0:1 true success_rate]" {
		t.Fatalf("events %v", *events)
	}
	// Below min hosts nothing is judged.
	p.Sweep()
	for _, in := range p.instances[1:3] {
		for range 200 {
			in.Report(true)
		}
	}
	p.Sweep()
	if len(*events) != 1 {
		t.Fatalf("judged with too few hosts: %v", *events)
	}
}

func TestNeverEjectsTheOnlyInstanceOrAll(t *testing.T) {
	p, _, _ := outlierPool(t, 1, Outlier{Consecutive5xx: 1})
	p.instances[0].Report(true)
	if p.instances[0].Ejected() {
		t.Fatal("ejected the only instance")
	}
	p, _, _ = outlierPool(t, 2, Outlier{Consecutive5xx: 1, MaxEjectionPercent: 100})
	p.instances[0].Report(true)
	p.instances[1].Report(true)
	if p.instances[0].Ejected() == p.instances[1].Ejected() {
		t.Fatal("both or neither of two instances ejected")
	}
}

func TestPickOtherAvoidsAnInstanceAndFallsBackToEjected(t *testing.T) {
	p, _, _ := outlierPool(t, 2, Outlier{Consecutive5xx: 1, MaxEjectionPercent: 50})
	a, b := p.instances[0], p.instances[1]
	for range 4 {
		in, err := p.PickOther(a)
		if err != nil || in != b {
			t.Fatalf("PickOther(a) = %v, %v", in, err)
		}
		in.Done()
	}
	b.Report(true) // b ejected; a is the only one left
	b.healthy.Store(true)
	a.healthy.Store(false)
	in, err := p.Pick()
	if err != nil || in != b {
		t.Fatalf("with a down, the ejected b must still serve: %v, %v", in, err)
	}
	in.Done()
	if _, err := p.PickOther(b); err != ErrNoHealthy {
		t.Fatalf("PickOther(b) with a down: %v", err)
	}
}

func TestOutlierConfigErrors(t *testing.T) {
	for _, o := range []Outlier{{Consecutive5xx: -1}, {MaxEjectionPercent: 101}, {Interval: -time.Second},
		{BaseEjection: time.Minute, MaxEjection: time.Second}, {StdevFactor: -1}} {
		if _, err := New(Config{Instances: []string{"http://a:1"}, Outlier: &o}); err == nil {
			t.Errorf("outlier %+v accepted", o)
		}
	}
}
