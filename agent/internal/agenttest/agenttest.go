// Package agenttest starts agents on temporary spools and reads back what they wrote: the
// instrumentation packages test against the real spool, not a mock of the agent.
package agenttest

import (
	"context"
	"testing"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

// New starts an agent writing to a temporary spool, closed when the test ends.
func New(t testing.TB, cfg agent.Config) *agent.Agent {
	t.Helper()
	cfg.SpoolDir = t.TempDir()
	if cfg.Service == "" {
		cfg.Service = "order"
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	return a
}

// Records closes the agent (draining its queue) and decodes the spans and events it wrote.
func Records(t testing.TB, a *agent.Agent) (spans []schemas.Span, events []schemas.Event) {
	t.Helper()
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return Read[schemas.Span](t, a.SpoolDir(), spool.StreamSpans), Read[schemas.Event](t, a.SpoolDir(), spool.StreamEvents)
}

// Read decodes every record of one stream of a spool; a damaged segment fails the test.
func Read[T any](t testing.TB, dir, stream string) []T {
	t.Helper()
	var out []T
	res, err := spool.Scan(dir, stream, func(s *schemas.Schema, b []byte) error {
		var rec T
		_, err := schemas.DecodeBinary(s.Fingerprint, b, &rec)
		out = append(out, rec)
		return err
	})
	if err != nil || res != (spool.ScanResult{}) {
		t.Fatalf("scan %s: %+v, %v", stream, res, err)
	}
	return out
}
