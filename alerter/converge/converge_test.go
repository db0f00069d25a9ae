package converge

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC).UnixNano()

// burst is n occurrences of sig from hosts h0..h(hosts-1), spread evenly over span from at.
func burst(first int64, n, hosts int, sig string, at int64, span time.Duration) []Occurrence {
	out := make([]Occurrence, n)
	for i := range out {
		out[i] = Occurrence{Offset: first + int64(i), Time: at + int64(span)*int64(i)/int64(n), Signature: sig,
			Host: fmt.Sprintf("h%03d", i%hosts), EventID: fmt.Sprintf("e%d", first+int64(i)), Window: 10 * time.Second}
	}
	return out
}

func apply(t *testing.T, p *Partition, occ []Occurrence) (fired []Decision) {
	t.Helper()
	for _, o := range occ {
		d, err := p.Apply(o, AlertID("mercury.events", 0, o.Offset))
		if err != nil {
			t.Fatal(err)
		}
		if d.Fire {
			fired = append(fired, d)
		}
	}
	return fired
}

func TestThousandFromTwoHundredHostsFireOnce(t *testing.T) {
	p := New(0)
	fired := apply(t, p, burst(0, 1000, 200, "sig", t0, 3*time.Second))
	if len(fired) != 1 {
		t.Fatalf("1,000 occurrences in 3 s fired %d alerts, want 1", len(fired))
	}
	w := p.Windows["sig"]
	if w.Suppressed != 999 || len(w.Hosts) != 200 || len(w.HostList()) != ListHosts || len(w.Events) != Samples {
		t.Fatalf("window: suppressed %d hosts %d listed %d samples %d", w.Suppressed, len(w.Hosts), len(w.HostList()), len(w.Events))
	}
	// The next occurrence after the window fires again and reports what was folded.
	after := burst(1000, 1, 1, "sig", t0+int64(10*time.Second), 0)
	fired = apply(t, p, after)
	if len(fired) != 1 {
		t.Fatalf("the occurrence after the window fired %d, want 1", len(fired))
	}
	d := fired[0]
	if d.Window.PrevSuppressed != 999 || d.Window.PrevHostCount != 200 || len(d.Window.PrevHosts) != ListHosts ||
		d.Closed == nil || d.Closed.AlertID != w.AlertID || d.Window.AlertID == w.AlertID {
		t.Fatalf("second alert: prev suppressed %d hosts %d closed %v", d.Window.PrevSuppressed, d.Window.PrevHostCount, d.Closed)
	}
}

func TestSignaturesConvergeApart(t *testing.T) {
	p := New(0)
	occ := append(burst(0, 10, 2, "a", t0, time.Second), burst(10, 10, 2, "b", t0, time.Second)...)
	if fired := apply(t, p, occ); len(fired) != 2 {
		t.Fatalf("two signatures fired %d alerts, want 2", len(fired))
	}
}

func TestLateEventFoldsIntoCurrentWindow(t *testing.T) {
	p := New(0)
	apply(t, p, burst(0, 1, 1, "a", t0, 0))
	late := burst(1, 1, 1, "a", t0-int64(time.Minute), 0) // a host whose clock is behind
	if fired := apply(t, p, late); len(fired) != 0 || p.Windows["a"].Suppressed != 1 {
		t.Fatalf("late occurrence fired %d, suppressed %d", len(fired), p.Windows["a"].Suppressed)
	}
}

func TestApplyRejectsReplayedOffsetAndBadWindow(t *testing.T) {
	p := New(5)
	if _, err := p.Apply(Occurrence{Offset: 4, Window: time.Second}, "x"); err == nil {
		t.Fatal("an offset below Next was applied")
	}
	if _, err := p.Apply(Occurrence{Offset: 5}, "x"); err == nil {
		t.Fatal("a zero window was accepted")
	}
	if p.Next != 5 {
		t.Fatalf("a rejected occurrence moved Next to %d", p.Next)
	}
}

// A new owner that loads the state saved at an offset and applies the rest decides exactly
// what the old owner decided: the same alerts, with the same ids and counts.
func TestSavedStateReplaysIdentically(t *testing.T) {
	var occ []Occurrence
	off := int64(0)
	for round := range 6 {
		for _, sig := range []string{"a", "b", "c"} {
			b := burst(off, 7, 3, sig, t0+int64(round)*int64(4*time.Second), 2*time.Second)
			occ = append(occ, b...)
			off += int64(len(b))
		}
	}
	whole := New(0)
	want := apply(t, whole, occ)
	for cut := range len(occ) {
		p := New(0)
		got := apply(t, p, occ[:cut])
		blob, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		q, err := Unmarshal(blob)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, apply(t, q, occ[cut:])...)
		if len(got) != len(want) {
			t.Fatalf("cut at %d: %d alerts, want %d", cut, len(got), len(want))
		}
		for i := range got {
			if got[i].Window.AlertID != want[i].Window.AlertID || got[i].Window.PrevSuppressed != want[i].Window.PrevSuppressed {
				t.Fatalf("cut at %d: alert %d differs: %+v vs %+v", cut, i, got[i].Window, want[i].Window)
			}
		}
		if !reflect.DeepEqual(q.Windows, whole.Windows) || q.Next != whole.Next {
			t.Fatalf("cut at %d: final state differs", cut)
		}
	}
}

func TestPruneForgetsQuietEndedWindows(t *testing.T) {
	p := New(0)
	apply(t, p, burst(0, 1, 1, "quiet", t0, 0))
	apply(t, p, burst(1, 3, 1, "noisy", t0, time.Second))
	apply(t, p, burst(4, 1, 1, "later", t0+int64(time.Minute), 0))
	if _, ok := p.Windows["quiet"]; ok {
		t.Error("an ended window with no repeats is still remembered")
	}
	if _, ok := p.Windows["noisy"]; !ok {
		t.Error("an ended window with repeats to report was forgotten")
	}
	apply(t, p, burst(5, 1, 1, "later", t0+int64(Keep)+int64(time.Hour), 0))
	if _, ok := p.Windows["noisy"]; ok {
		t.Error("a window ended more than Keep ago is still remembered")
	}
}

func TestEndedAndMarkClosed(t *testing.T) {
	p := New(0)
	apply(t, p, burst(0, 2, 1, "a", t0, 0))
	if got := p.Ended(t0 + int64(5*time.Second)); len(got) != 0 {
		t.Fatalf("a window still open is listed as ended")
	}
	got := p.Ended(t0 + int64(10*time.Second))
	if len(got) != 1 {
		t.Fatalf("ended = %d, want 1", len(got))
	}
	got[0].MarkClosed()
	if got := p.Ended(t0 + int64(time.Hour)); len(got) != 0 {
		t.Fatal("a closed window is listed again")
	}
}
