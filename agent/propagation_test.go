package agent_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/internal/agenttest"
	"github.com/mercury-apm/mercury/schemas"
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

// The spec's grammar as regular expressions: an implementation independent of the agent's, to
// check what it writes.
var (
	specKey   = regexp.MustCompile(`^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$`)
	specValue = regexp.MustCompile(`^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$`)
)

// checkTracestate fails unless s is a tracestate any conforming tracer keeps whole: valid
// members, one per key, at most 32, Mercury's first.
func checkTracestate(t *testing.T, s string) {
	t.Helper()
	members := strings.Split(s, ",")
	if len(members) > 32 {
		t.Errorf("%d members", len(members))
	}
	seen := map[string]bool{}
	for i, m := range members {
		k, v, _ := strings.Cut(m, "=")
		if !specKey.MatchString(k) || !specValue.MatchString(v) {
			t.Errorf("member %d %q breaks the grammar", i, m)
		}
		if seen[k] {
			t.Errorf("key %q twice", k)
		}
		seen[k] = true
		if (i == 0) != (k == "mercury") {
			t.Errorf("member %d is %q: Mercury's must come first, once", i, m)
		}
	}
}

// propagate extracts from a request carrying tracestate on the given field lines and injects
// into the next one, as a service in the middle of a chain does.
func propagate(t *testing.T, lines ...string) (agent.SpanContext, string) {
	t.Helper()
	in := agent.HeaderCarrier{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	if lines != nil {
		in["Tracestate"] = lines
	}
	sc, ok := agent.Extract(in)
	if !ok {
		t.Fatal("traceparent not extracted")
	}
	out := agent.HeaderCarrier{}
	agent.Inject(sc, out)
	return sc, out.Get(agent.HeaderTracestate)
}

// members returns "k0=v,k1=v,…" for keys k<from>…k<to-1>.
func members(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "k%d=v", i)
	}
	return b.String()
}

// TestTracestateRules walks the tracestate section of W3C Trace Context level 1: each case is
// what a service receives and what it sends on. Mercury's member is "mercury=r:1" where the
// request brought none (rate 1 from traceparent alone).
func TestTracestateRules(t *testing.T) {
	const own = "mercury=r:1"
	allKeyChars := "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
	var allValueChars []byte
	for c := byte(0x20); c <= 0x7e; c++ {
		if c != ',' && c != '=' {
			allValueChars = append(allValueChars, c)
		}
	}
	cases := []struct {
		name  string
		lines []string
		want  string
	}{
		// §3.3.1: several field lines are one list, in order.
		{"second line kept (issue 18, 1)", []string{"first=1", "second=2"}, own + ",first=1,second=2"},
		{"three lines in order", []string{"foo=1,bar=2", "rojo=1,congo=2", "baz=3"}, own + ",foo=1,bar=2,rojo=1,congo=2,baz=3"},
		{"empty line after", []string{"foo=1", ""}, own + ",foo=1"},
		{"empty line before", []string{"", "foo=1"}, own + ",foo=1"},
		{"lines joined where offsets line up", []string{"a=1", "X=1,b=2"}, own + ",a=1,b=2"},
		{"mercury on the second line", []string{"congo=1", "mercury=r:0.5;d:1"}, "mercury=r:0.5;d:1,congo=1"},
		// §3.3.1: empty and whitespace-only members are allowed; OWS around members is ignored.
		{"no tracestate", nil, own},
		{"empty tracestate", []string{""}, own},
		{"only empty members", []string{" , ,\t,"}, own},
		{"spaces and tabs around members", []string{"foo=1 \t , \t bar=2, \t baz=3"}, own + ",foo=1,bar=2,baz=3"},
		{"tabs and spaces around members", []string{"foo=1\t \t,\t \tbar=2,\t \tbaz=3"}, own + ",foo=1,bar=2,baz=3"},
		{"leading and trailing OWS", []string{"\t foo=1 \t"}, own + ",foo=1"},
		{"empty members between", []string{"foo=1,,, bar=2,"}, own + ",foo=1,bar=2"},
		// §3.3.1.3.1 key: simple keys.
		{"space and uppercase in key (issue 18, 2)", []string{"Bad Key=1,ok=2"}, own + ",ok=2"},
		{"uppercase key", []string{"FOO=1,ok=2"}, own + ",ok=2"},
		{"dot in key", []string{"foo.bar=1,ok=2"}, own + ",ok=2"},
		{"space before =", []string{"foo =1,ok=2"}, own + ",ok=2"},
		{"empty key", []string{"=1,ok=2"}, own + ",ok=2"},
		{"no =", []string{"bad entry,ok=2"}, own + ",ok=2"},
		{"simple key starting with a digit", []string{"1foo=1,ok=2"}, own + ",ok=2"},
		{"every key character", []string{allKeyChars + "=1"}, own + "," + allKeyChars + "=1"},
		{"256-character key", []string{"k" + strings.Repeat("a", 255) + "=1"}, own + ",k" + strings.Repeat("a", 255) + "=1"},
		{"257-character key", []string{"k" + strings.Repeat("a", 256) + "=1,ok=2"}, own + ",ok=2"},
		{"non-ASCII key", []string{"caf\u00e9=1,ok=2"}, own + ",ok=2"},
		// §3.3.1.3.1 key: multi-tenant keys.
		{"multi-tenant key", []string{"fw529a3039@dt=1"}, own + ",fw529a3039@dt=1"},
		{"tenant id starting with a digit", []string{"1a2b@dt=1"}, own + ",1a2b@dt=1"},
		{"every multi-tenant character", []string{allKeyChars + "@a" + allKeyChars[:13] + "=1"}, own + "," + allKeyChars + "@a" + allKeyChars[:13] + "=1"},
		{"system id starting with a digit", []string{"t@1dt=1,ok=2"}, own + ",ok=2"},
		{"empty system id", []string{"foo@=1,ok=2"}, own + ",ok=2"},
		{"empty tenant id", []string{"@foo=1,ok=2"}, own + ",ok=2"},
		{"two @", []string{"a@b@c=1,ok=2"}, own + ",ok=2"},
		{"241-character tenant id", []string{strings.Repeat("t", 241) + "@dt=1"}, own + "," + strings.Repeat("t", 241) + "@dt=1"},
		{"242-character tenant id", []string{strings.Repeat("t", 242) + "@dt=1,ok=2"}, own + ",ok=2"},
		{"14-character system id", []string{"t@" + strings.Repeat("s", 14) + "=1"}, own + ",t@" + strings.Repeat("s", 14) + "=1"},
		{"15-character system id", []string{"t@" + strings.Repeat("s", 15) + "=1,ok=2"}, own + ",ok=2"},
		{"uppercase tenant id", []string{"Tenant@dt=1,ok=2"}, own + ",ok=2"},
		// §3.3.1.3.2 value.
		{"every value character", []string{"foo=" + string(allValueChars)}, own + ",foo=" + string(allValueChars)},
		{"leading space kept in value", []string{"foo= 1"}, own + ",foo= 1"},
		{"inner space", []string{"foo=a b"}, own + ",foo=a b"},
		{"trailing spaces are OWS", []string{"foo=1   ,bar=2"}, own + ",foo=1,bar=2"},
		{"256-character value", []string{"foo=" + strings.Repeat("v", 256)}, own + ",foo=" + strings.Repeat("v", 256)},
		{"257-character value", []string{"foo=" + strings.Repeat("v", 257) + ",ok=2"}, own + ",ok=2"},
		{"empty value", []string{"foo=,ok=2"}, own + ",ok=2"},
		{"space-only value", []string{"foo= ,ok=2"}, own + ",ok=2"},
		{"= in value", []string{"foo=a=b,ok=2"}, own + ",ok=2"},
		{"tab in value", []string{"foo=a\tb,ok=2"}, own + ",ok=2"},
		{"control character in value", []string{"foo=a\x01b,ok=2"}, own + ",ok=2"},
		{"DEL in value", []string{"foo=a\x7f,ok=2"}, own + ",ok=2"},
		{"non-ASCII value (issue 18, 2)", []string{"foo=caf\u00e9,ok=2"}, own + ",ok=2"},
		// §3.3.1.4: one member per key; the leftmost, the latest position, wins.
		{"duplicate key (issue 18, 2)", []string{"congo=1,rojo=2,congo=3"}, own + ",congo=1,rojo=2"},
		{"duplicate across lines", []string{"foo=1", "foo=2"}, own + ",foo=1"},
		{"the first valid one wins", []string{"foo=a\x01,foo=2,foo=3"}, own + ",foo=2"},
		{"key prefixes are other keys", []string{"foo=1,foobar=2,foo@x=3,fo=4"}, own + ",foo=1,foobar=2,foo@x=3,fo=4"},
		{"mercury twice", []string{"mercury=r:0.5,mercury=r:0.25;d:1"}, "mercury=r:0.5"},
		// §3.3.1.5 and §3.5: at most 32 members; Mercury's is updated and moved first.
		{"older mercury member replaced, moved first", []string{"congo=1,mercury=r:0.25;d:1;o:shop,rojo=2"}, "mercury=r:0.25;d:1;o:shop,congo=1,rojo=2"},
		{"31 others fit", []string{members(0, 31)}, own + "," + members(0, 31)},
		{"32 others: the rightmost goes", []string{members(0, 32)}, own + "," + members(0, 31)},
		{"40 others over two lines", []string{members(0, 20), members(20, 40)}, own + "," + members(0, 31)},
		{"mercury 41st still read", []string{members(0, 40) + ",mercury=r:0.5;d:1"}, "mercury=r:0.5;d:1," + members(0, 31)},
		{"invalid members do not count", []string{"A=1,B=2,C=3," + members(0, 31)}, own + "," + members(0, 31)},
		// Issue 18, 3: the request that lost its dye mark behind OpenTelemetry.
		{"edge request with an invalid vendor", []string{"mercury=r:0.25;d:1;o:edge,Vendor=1"}, "mercury=r:0.25;d:1;o:edge"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, got := propagate(t, c.lines...)
			if got != c.want {
				t.Fatalf("tracestate %q\n got %q\nwant %q", c.lines, got, c.want)
			}
			checkTracestate(t, got)
		})
	}
}

func TestMercuryMember(t *testing.T) {
	sc, out := propagate(t, "mercury=r:0.25;d:1;o:edge,vendor=1")
	if sc.SampleRate != 0.25 || !sc.Dyed || sc.OriginDomain != "edge" || sc.OtherState != "vendor=1" {
		t.Fatalf("extract: %+v", sc)
	}
	if out != "mercury=r:0.25;d:1;o:edge,vendor=1" {
		t.Fatalf("inject: %q", out)
	}
	// Hostile or unknown Mercury fields are ignored, never trusted.
	for _, v := range []string{"r:7;o:a/b;d:yes", "r:0;d:0", "r:-1", "r:NaN", "r:+Inf;o:" + strings.Repeat("x", 65), "x:1;r"} {
		sc, _ := propagate(t, "mercury="+v)
		if sc.SampleRate != 1 || sc.Dyed || sc.OriginDomain != "" {
			t.Errorf("mercury=%s accepted: %+v", v, sc)
		}
	}
	// Whatever a SpanContext holds, Mercury's member stays valid: an origin ValidName refuses
	// is left out, every rate renders in value characters.
	for _, sc := range []agent.SpanContext{
		{SampleRate: 1e-300, Dyed: true, OriginDomain: "shop"},
		{SampleRate: math.NaN(), OriginDomain: "Shop, Inc.=1"},
		{SampleRate: math.Inf(-1), OriginDomain: strings.Repeat("d", 65)},
		{SampleRate: -0.000001234, OriginDomain: "交易"},
	} {
		got := agent.FormatTracestate(sc)
		checkTracestate(t, got)
		if strings.Contains(got, ";o:") != schemas.ValidName(sc.OriginDomain) {
			t.Errorf("%+v: %q", sc, got)
		}
	}
}

// A domain that cannot travel as it is (spaces, commas, non-ASCII) travels encoded, the same
// for every service of the domain, and different for another domain.
func TestOriginDomainEncoding(t *testing.T) {
	root := agenttest.New(t, agent.Config{Domain: "Shop, Inc.=1"})
	ctx, s := root.StartSpan(context.Background(), "checkout")
	defer s.End()
	sc, _ := agent.SpanContextFrom(ctx)
	out := agent.HeaderCarrier{}
	agent.Inject(sc, out)
	state := out.Get(agent.HeaderTracestate)
	checkTracestate(t, state)
	if !strings.HasPrefix(state, "mercury=r:1;o:Shop__Inc._1-") || len(state) != len("mercury=r:1;o:Shop__Inc._1-")+8 {
		t.Fatalf("tracestate %q", state)
	}
	in, ok := agent.Extract(out)
	if !ok || in.OriginDomain != sc.OriginDomain {
		t.Fatalf("origin %q extracted as %q", sc.OriginDomain, in.OriginDomain)
	}
	for _, c := range []struct {
		domain string
		follow bool // the root's decision; else the service decides anew, at 1e-9: unsampled
	}{{"Shop, Inc.=1", true}, {"Shop; Inc.=1", false}} {
		a := agenttest.New(t, agent.Config{Domain: c.domain, SampleRate: 1e-9, OverrideDomainSampling: true})
		_, s := a.StartSpan(agent.ContextWithRemote(context.Background(), in), "pay")
		if s.Sampled() != c.follow {
			t.Errorf("domain %q: sampled %v, want %v", c.domain, s.Sampled(), c.follow)
		}
		s.End()
	}
	for _, d := range [][2]string{{"交易", "支付"}, {strings.Repeat("a", 70), strings.Repeat("a", 71)}} {
		a, b := agent.OriginName(d[0]), agent.OriginName(d[1])
		if a == b || !schemas.ValidName(a) || !schemas.ValidName(b) {
			t.Errorf("%q → %q, %q → %q", d[0], a, d[1], b)
		}
	}
	if got := agent.OriginName("shop-eu_1.x"); got != "shop-eu_1.x" {
		t.Errorf("a valid domain changed: %q", got)
	}
}

// Extract reads every field line from a plain http.Header too, and the first line from a
// Carrier that cannot list them.
func TestTracestateCarriers(t *testing.T) {
	h := http.Header{}
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.Add("tracestate", "first=1")
	h.Add("tracestate", "mercury=r:0.5")
	sc, ok := agent.Extract(h)
	if !ok || sc.OtherState != "first=1" || sc.SampleRate != 0.5 {
		t.Fatalf("http.Header: %+v", sc)
	}
	sc, ok = agent.Extract(firstLineCarrier{h})
	if !ok || sc.OtherState != "first=1" || sc.SampleRate != 1 {
		t.Fatalf("first line only: %+v", sc)
	}
}

// firstLineCarrier hides http.Header's Values.
type firstLineCarrier struct{ h http.Header }

func (c firstLineCarrier) Get(k string) string { return c.h.Get(k) }
func (c firstLineCarrier) Set(k, v string)     { c.h.Set(k, v) }

// The common cases allocate nothing: Mercury's member alone, or first with other vendors'
// after it, on one line, as Mercury and OpenTelemetry send them. Other orders join once.
func TestExtractAllocations(t *testing.T) {
	for _, c := range []struct {
		state []string
		want  float64
	}{
		{nil, 0},
		{[]string{"mercury=r:0.25;d:1;o:shop"}, 0},
		{[]string{"mercury=r:0.25;d:1;o:shop,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}, 0},
		{[]string{"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}, 0},
		{[]string{"congo=t61rcWkgMzE,mercury=r:0.25,rojo=00f067aa0ba902b7"}, 1},
		{[]string{"congo=t61rcWkgMzE", "rojo=00f067aa0ba902b7"}, 1},
	} {
		h := agent.HeaderCarrier{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "Tracestate": c.state}
		if n := testing.AllocsPerRun(100, func() { agent.Extract(h) }); n != c.want {
			t.Errorf("%q: %v allocations, want %v", c.state, n, c.want)
		}
	}
}

// FuzzTracestate: whatever arrives, what goes on is a valid list with Mercury's member first,
// and passing it through a second service changes nothing.
func FuzzTracestate(f *testing.F) {
	for _, s := range []string{"", "congo=1,rojo=2,congo=3", "Bad Key=1,mercury=r:0.25;d:1;o:edge", " ,\t, foo=1 ", "a@b=1,a@b@c=2", "foo= x ,bar=\x7f"} {
		f.Add(s, "second=2")
	}
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		_, once := propagate(t, line1, line2)
		checkTracestate(t, once)
		if _, twice := propagate(t, once); twice != once {
			t.Fatalf("second hop changed %q into %q", once, twice)
		}
	})
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
