package agent_test

import (
	"net/http"
	"testing"

	"github.com/mercury-apm/mercury/agent"
)

// BenchmarkPropagation is what every traced request pays to read and write the W3C headers,
// for the header shapes a service meets: from a root without tracestate, from Mercury alone,
// from Mercury with other vendors, and from a tracer that splits and pads the list.
func BenchmarkPropagation(b *testing.B) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		name  string
		state []string // tracestate header lines
	}{
		{"traceparent-only", nil},
		{"mercury", []string{"mercury=r:0.25;d:1;o:shop"}},
		{"mercury+2", []string{"mercury=r:0.25;d:1;o:shop,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}},
		{"split+ows", []string{"congo=t61rcWkgMzE , mercury=r:0.25;d:1;o:shop", "rojo=00f067aa0ba902b7"}},
	}
	for _, c := range cases {
		h := agent.HeaderCarrier(http.Header{"Traceparent": {tp}})
		if c.state != nil {
			h["Tracestate"] = c.state
		}
		b.Run("Extract/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				agent.Extract(h)
			}
		})
		sc, _ := agent.Extract(h)
		out := agent.HeaderCarrier(http.Header{})
		b.Run("Inject/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				agent.Inject(sc, out)
			}
		})
	}
}
