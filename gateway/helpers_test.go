package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/gateway/cpu"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is an Observer that keeps everything for assertions.
type recorder struct {
	mu       sync.Mutex
	events   []string
	outcomes []Outcome
}

func (r *recorder) RequestStart(ctx context.Context, _ RouteInfo, _ *http.Request) context.Context {
	return ctx
}

func (r *recorder) RequestDone(_ context.Context, _ RouteInfo, o Outcome) {
	r.mu.Lock()
	r.outcomes = append(r.outcomes, o)
	r.mu.Unlock()
}

func (r *recorder) Event(kind EventKind, route RouteInfo, attrs ...slog.Attr) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", kind, route.Name)
	for _, a := range attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.mu.Lock()
	r.events = append(r.events, b.String())
	r.mu.Unlock()
}

func (r *recorder) eventsOf(kind EventKind) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if strings.HasPrefix(e, string(kind)+" ") {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) lastOutcome() Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.outcomes[len(r.outcomes)-1]
}

var quiet = slog.New(slog.DiscardHandler)

// newGateway builds a gateway with test defaults (quiet logs, a recorder,
// a CPU source at 0) and closes it with the test.
func newGateway(t *testing.T, cfg Config) (*Gateway, *recorder) {
	t.Helper()
	rec := &recorder{}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.Observer == nil {
		cfg.Observer = rec
	}
	if cfg.CPUSource == nil {
		cfg.CPUSource = &cpu.Fixed{}
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, rec
}

// upstreamServer is a local upstream: 127.0.0.1 only, closed with the test.
func upstreamServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func ok(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }
}

// do sends a request straight into the handler and returns status and body.
func do(h http.Handler, method, path string, body io.Reader, hdr ...string) (int, string) {
	req := httptest.NewRequest(method, path, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

// counterValue reads one child of a counter vector from the gateway's
// registry by one label; 0 when absent.
func counterValue(t *testing.T, g *Gateway, name, label, value string) float64 {
	t.Helper()
	families, err := g.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
