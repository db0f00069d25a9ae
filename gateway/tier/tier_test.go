package tier

import (
	"errors"
	"testing"
)

func TestShedsLowTiersFirst(t *testing.T) {
	s, err := New(Config{MaxInFlight: 10})
	if err != nil {
		t.Fatal(err)
	}
	// Fill to each load level with tier-1 requests and see who is admitted.
	admitted := func() (tiers []int) {
		for tier := 1; tier <= 4; tier++ {
			if done, err := s.Allow(tier); err == nil {
				done(nil)
				tiers = append(tiers, tier)
			} else if !errors.Is(err, ErrShed) {
				t.Fatal(err)
			}
		}
		return tiers
	}
	var held []func(error)
	want := map[int]int{0: 4, 6: 4, 7: 3, 8: 2, 9: 1, 10: 0}
	for n := 0; n <= 10; n++ {
		if w, ok := want[n]; ok {
			if got := admitted(); len(got) != w || (w > 0 && got[0] != 1) {
				t.Fatalf("load %d/10: admitted tiers %v, want tiers 1..%d", n, got, w)
			}
		}
		if n < 10 {
			d, err := s.Allow(1)
			if err != nil {
				t.Fatalf("tier 1 shed at %d/10", n)
			}
			held = append(held, d)
		}
	}
	for _, d := range held {
		d(nil)
	}
	if s.InFlight() != 0 {
		t.Fatalf("in-flight %d after all done", s.InFlight())
	}
}

func TestSignal(t *testing.T) {
	load := 0.85
	s, _ := New(Config{Signals: []Signal{func() float64 { return load }}})
	if _, err := s.Allow(3); err == nil {
		t.Fatal("tier 3 admitted at 0.85")
	}
	d, err := s.Allow(2)
	if err != nil {
		t.Fatal("tier 2 shed at 0.85")
	}
	d(nil)
	if _, err := s.Allow(9); err == nil {
		t.Fatal("unknown tier not treated as tier 4")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{MaxInFlight: -1}, {Thresholds: [4]float64{0.5, 0.9, 0.8, 0.7}}, {Thresholds: [4]float64{1, 1, 1, 0}}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestSuccessorSharesTheCounter(t *testing.T) {
	a, _ := New(Config{MaxInFlight: 2})
	done, _ := a.Allow(1)
	b, _ := New(Config{MaxInFlight: 2, InFlight: a.Counter()})
	if b.InFlight() != 1 {
		t.Fatalf("successor sees %d in flight, want the 1 admitted before", b.InFlight())
	}
	done(nil) // admitted by a, finished after the swap
	if b.InFlight() != 0 {
		t.Fatalf("successor sees %d in flight after the old request ended", b.InFlight())
	}
}
