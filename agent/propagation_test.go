package agent_test

import (
	"net/http"
	"testing"

	"github.com/mercury-apm/mercury/agent"
)

func TestParseTraceparent(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		in      string
		ok      bool
		sampled bool
	}{
		{valid, true, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", true, true}, // later versions may extend
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false, false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", false, false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false, false},
		{"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false, false},
		{"", false, false},
		{"garbage", false, false},
		{"00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\x00", false, false},
	}
	for _, c := range cases {
		sc, ok := agent.ParseTraceparent(c.in)
		if ok != c.ok || (ok && sc.Sampled != c.sampled) {
			t.Errorf("%q: ok=%v sampled=%v, want ok=%v sampled=%v", c.in, ok, sc.Sampled, c.ok, c.sampled)
		}
		if ok && c.in == valid && agent.FormatTraceparent(sc) != valid {
			t.Errorf("round trip: %q", agent.FormatTraceparent(sc))
		}
	}
}

func TestTracestate(t *testing.T) {
	h := http.Header{}
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.Set("tracestate", "congo=t61rcWkgMzE, mercury=r:0.25;d:1;o:shop ,rojo=00f067aa0ba902b7,bad entry")
	sc, ok := agent.Extract(h)
	if !ok || sc.SampleRate != 0.25 || !sc.Dyed || sc.OriginDomain != "shop" {
		t.Fatalf("extract: %+v %v", sc, ok)
	}
	out := http.Header{}
	agent.Inject(sc, out)
	if got, want := out.Get("tracestate"), "mercury=r:0.25;d:1;o:shop,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"; got != want {
		t.Fatalf("tracestate %q, want %q", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { agent.Extract(agent.HeaderCarrier(h)) }); n != 1 {
		t.Fatalf("Extract: %v allocations, want 1 (joining the two other entries)", n)
	}
	// Hostile Mercury values are ignored, never trusted.
	h.Set("tracestate", "mercury=r:7;o:a,b=c;d:yes")
	sc, _ = agent.Extract(h)
	if sc.SampleRate != 1 || sc.Dyed {
		t.Fatalf("hostile tracestate accepted: %+v", sc)
	}
	// A malformed traceparent means no parent at all, whatever tracestate says.
	h.Set("traceparent", "00-xyz")
	if _, ok := agent.Extract(h); ok {
		t.Fatal("malformed traceparent extracted")
	}
}

func TestInjectHeaderCarrier(t *testing.T) {
	sc, _ := agent.ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	sc.SampleRate, sc.Dyed, sc.OriginDomain, sc.OtherState = 0.5, true, "shop", "congo=t61rcWkgMzE"
	h := http.Header{}
	agent.Inject(sc, agent.HeaderCarrier(h))
	if got := h.Get("traceparent"); got != agent.FormatTraceparent(sc) {
		t.Fatalf("traceparent %q", got)
	}
	if got, want := h.Get("tracestate"), "mercury=r:0.5;d:1;o:shop,congo=t61rcWkgMzE"; got != want || want != agent.FormatTracestate(sc) {
		t.Fatalf("tracestate %q, want %q", got, want)
	}
	// The two values share a backing array: adding one must not overwrite the other.
	h.Add("traceparent", "x")
	if got := h.Values("tracestate"); len(got) != 1 || got[0] != "mercury=r:0.5;d:1;o:shop,congo=t61rcWkgMzE" {
		t.Fatalf("tracestate after Add: %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { agent.Inject(sc, agent.HeaderCarrier(h)) }); n != 2 {
		t.Fatalf("Inject: %v allocations, want 2", n)
	}
}
