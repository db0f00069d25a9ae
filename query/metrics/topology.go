package metrics

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// Rates is what the topology shows of a node or an edge over the window.
type Rates struct {
	QPS       float64  `json:"qps"`
	ErrorRate float64  `json:"error_rate"`
	P99Millis *float64 `json:"p99_ms"` // null without spans
}

func ratesOf(st *metric.Stats, window time.Duration) Rates {
	r := Rates{QPS: st.Spans() / window.Seconds(), ErrorRate: st.ErrorRate()}
	if st.Count > 0 {
		p := st.Quantile(0.99) / 1e6
		r.P99Millis = &p
	}
	return r
}

// Node is a service (its server spans) or a virtual node: a callee nobody instruments (a
// database, a cache), known only from its callers' client spans.
type Node struct {
	ID      string `json:"id"`
	Virtual bool   `json:"virtual,omitempty"`
	Rates
}

// Edge is calls from Source to Target, as the caller saw them.
type Edge struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Rates
}

// Topology answers /api/v1/topology.
type Topology struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Nodes []Node    `json:"nodes"`
	Edges []Edge    `json:"edges"`
}

type window struct {
	filter     metricstore.Filter
	start, end time.Time
}

func parseWindow(v url.Values, now time.Time, lookback time.Duration) (window, error) {
	p := api.NewParams(v, "domain", "start", "end", "dyed")
	w := window{filter: metricstore.Filter{Domain: p.String("domain"), Dyed: p.Bool("dyed")}}
	w.start, w.end = timeWindow(p, now, lookback)
	if err := p.Err(); err != nil {
		return w, err
	}
	// Points are per minute: widen to whole minutes so the rates divide by what was read.
	w.start, w.end = w.start.Truncate(time.Minute), w.end.Add(time.Minute-1).Truncate(time.Minute)
	return w, nil
}

func (m *Room) topology(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	w, err := parseWindow(r.URL.Query(), m.now(), 15*time.Minute)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	t, err := BuildTopology(r.Context(), m.Store, w.filter, w.start, w.end)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	return t, http.StatusOK, nil
}

// merged reads every point of the series in [start, end) into one Stats.
func merged(ctx context.Context, store metricstore.Store, ids []string, start, end time.Time) (*metric.Stats, error) {
	st := new(metric.Stats)
	for _, id := range ids {
		if err := store.Range(ctx, id, start, end, func(p *metricstore.Point) error { st.Merge(&p.Stats); return nil }); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// BuildTopology merges, over [start, end), each service's server series into its node and
// each caller → callee edge's series into the edge; callees that are no service become
// virtual nodes with the rates of their incoming edges.
func BuildTopology(ctx context.Context, store metricstore.Store, f metricstore.Filter, start, end time.Time) (*Topology, error) {
	ops, err := store.Series(ctx, f, start, end)
	if err != nil {
		return nil, err
	}
	ef := f
	ef.Edges = true
	edges, err := store.Series(ctx, ef, start, end)
	if err != nil {
		return nil, err
	}
	nodeSeries := map[string][]string{}
	for _, s := range ops {
		if s.Labels.Kind == schemas.KindServer || s.Labels.Kind == schemas.KindConsumer {
			nodeSeries[s.Labels.Service] = append(nodeSeries[s.Labels.Service], s.ID)
		}
	}
	type pair struct{ from, to string }
	edgeSeries := map[pair][]string{}
	for _, s := range edges {
		k := pair{s.Labels.Service, s.Labels.Peer}
		edgeSeries[k] = append(edgeSeries[k], s.ID)
		if _, ok := nodeSeries[s.Labels.Service]; !ok {
			nodeSeries[s.Labels.Service] = nil // a caller with no server spans (a batch job)
		}
	}
	span := end.Sub(start)
	t := &Topology{Start: start, End: end, Nodes: []Node{}, Edges: []Edge{}}
	incoming := map[string]*metric.Stats{}
	for k, ids := range edgeSeries {
		st, err := merged(ctx, store, ids, start, end)
		if err != nil {
			return nil, err
		}
		t.Edges = append(t.Edges, Edge{Source: k.from, Target: k.to, Rates: ratesOf(st, span)})
		if _, isService := nodeSeries[k.to]; !isService {
			if incoming[k.to] == nil {
				incoming[k.to] = new(metric.Stats)
			}
			incoming[k.to].Merge(st)
		}
	}
	for svc, ids := range nodeSeries {
		st, err := merged(ctx, store, ids, start, end)
		if err != nil {
			return nil, err
		}
		t.Nodes = append(t.Nodes, Node{ID: svc, Rates: ratesOf(st, span)})
	}
	for peer, st := range incoming {
		t.Nodes = append(t.Nodes, Node{ID: peer, Virtual: true, Rates: ratesOf(st, span)})
	}
	slices.SortFunc(t.Nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(t.Edges, func(a, b Edge) int { return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Target, b.Target)) })
	return t, nil
}

// Service is one service with its operations (server and client alike).
type Service struct {
	Domain     string   `json:"domain"`
	Name       string   `json:"name"`
	Operations []string `json:"operations"`
}

// Services answers /api/v1/services.
type Services struct {
	Services []Service `json:"services"`
}

func (m *Room) services(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	w, err := parseWindow(r.URL.Query(), m.now(), 24*time.Hour)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	ss, err := m.Store.Series(r.Context(), w.filter, w.start, w.end)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	type key struct{ domain, name string }
	ops := map[key][]string{}
	for _, s := range ss {
		k := key{s.Labels.Domain, s.Labels.Service}
		if !slices.Contains(ops[k], s.Labels.Operation) {
			ops[k] = append(ops[k], s.Labels.Operation)
		}
	}
	out := Services{Services: []Service{}}
	for k, o := range ops {
		slices.Sort(o)
		out.Services = append(out.Services, Service{Domain: k.domain, Name: k.name, Operations: o})
	}
	slices.SortFunc(out.Services, func(a, b Service) int { return cmp.Or(cmp.Compare(a.Domain, b.Domain), cmp.Compare(a.Name, b.Name)) })
	return out, http.StatusOK, nil
}
