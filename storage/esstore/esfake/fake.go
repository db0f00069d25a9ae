// Package esfake is an in-test Elasticsearch 8 on 127.0.0.1 that reproduces the documented
// responses esstore depends on: the X-Elastic-Product header (the client refuses servers
// without it), index templates, _bulk with per-item results and item-level errors,
// whole-request 429 (es_rejected_execution_exception), index_not_found_exception 404 for
// missing concrete indices unless ignore_unavailable, _cat/indices, index deletion, and the
// search DSL subset esstore generates (bool.filter of term/terms/range, sort, collapse,
// search_after, _source includes, terms and composite aggregations). Anything outside that subset is a 400
// parsing_exception, so a client change that leaves the subset fails its tests.
package esfake

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Server is the fake cluster.
type Server struct {
	*httptest.Server

	mu              sync.Mutex
	indices         map[string]map[string]map[string]any // index → id → source
	templates       map[string]json.RawMessage
	noProduct       bool
	requestFaults   []fault
	itemFaults      []fault
	extraItems      int
	calls           map[string]int
	lastSearchBody  json.RawMessage
	searchedIndices []string
}

type fault struct {
	status int
	typ    string
}

// New starts a fake cluster; Close stops it.
func New() *Server {
	s := &Server{indices: map[string]map[string]map[string]any{}, templates: map[string]json.RawMessage{}, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// OmitProductHeader makes replies lack X-Elastic-Product, like a proxy or another product.
func (s *Server) OmitProductHeader() { s.mu.Lock(); s.noProduct = true; s.mu.Unlock() }

// FailRequests makes the next n requests fail as a whole with status (429 gives
// es_rejected_execution_exception, others a generic exception of that status).
func (s *Server) FailRequests(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.requestFaults = append(s.requestFaults, fault{status: status, typ: errType(status)})
	}
}

// FailItems makes the next n bulk items fail with status and error type (e.g. 400
// mapper_parsing_exception, 429 es_rejected_execution_exception).
func (s *Server) FailItems(n, status int, typ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		s.itemFaults = append(s.itemFaults, fault{status: status, typ: typ})
	}
}

// ExtraItems makes the next bulk reply list n more items than were sent.
func (s *Server) ExtraItems(n int) { s.mu.Lock(); s.extraItems = n; s.mu.Unlock() }

// Calls counts requests by "METHOD endpoint" (endpoint: _bulk, _search, _index_template,
// _cat, index).
func (s *Server) Calls(key string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls[key] }

// LastSearch returns the body and index expression of the last search.
func (s *Server) LastSearch() (json.RawMessage, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSearchBody, s.searchedIndices
}

// Indices lists the existing indices, sorted.
func (s *Server) Indices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.indices))
}

// DocIDs returns the ids of an index's documents (nil for no such index).
func (s *Server) DocIDs(index string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Keys(s.indices[index]))
}

// Template returns a stored index template.
func (s *Server) Template(name string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.templates[name]
}

func errType(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "es_rejected_execution_exception"
	case http.StatusServiceUnavailable:
		return "unavailable_shards_exception"
	case http.StatusBadRequest:
		return "illegal_argument_exception"
	}
	return "exception"
}

func errBody(status int, typ, reason string, extra map[string]any) map[string]any {
	cause := map[string]any{"type": typ, "reason": reason}
	for k, v := range extra {
		cause[k] = v
	}
	e := map[string]any{"root_cause": []any{cause}, "type": typ, "reason": reason}
	for k, v := range extra {
		e[k] = v
	}
	return map[string]any{"error": e, "status": status}
}

func (s *Server) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	if !s.noProduct {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	endpoint := "index"
	for _, p := range parts {
		if strings.HasPrefix(p, "_") {
			endpoint = p
			break
		}
	}
	if parts[0] == "" {
		endpoint = "root"
	}
	s.calls[r.Method+" "+endpoint]++
	if len(s.requestFaults) > 0 {
		f := s.requestFaults[0]
		s.requestFaults = s.requestFaults[1:]
		s.reply(w, f.status, errBody(f.status, f.typ, "injected failure", nil))
		return
	}
	switch {
	case endpoint == "root":
		s.reply(w, 200, map[string]any{"name": "esfake", "cluster_name": "esfake", "version": map[string]any{"number": "8.19.7"}, "tagline": "You Know, for Search"})
	case endpoint == "_index_template" && len(parts) == 2 && r.Method == http.MethodPut:
		var raw json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
			s.reply(w, 400, errBody(400, "parse_exception", err.Error(), nil))
			return
		}
		s.templates[parts[1]] = raw
		s.reply(w, 200, map[string]any{"acknowledged": true})
	case endpoint == "_bulk" && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		s.bulk(w, r)
	case endpoint == "_search":
		s.search(w, r, parts)
	case endpoint == "_cat" && len(parts) >= 2 && parts[1] == "indices":
		var pats []string
		if len(parts) == 3 {
			pats = strings.Split(parts[2], ",")
		}
		rows := []map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(s.indices)) {
			if len(pats) == 0 || matchAny(pats, name) {
				rows = append(rows, map[string]string{"index": name})
			}
		}
		s.reply(w, 200, rows)
	case endpoint == "index" && r.Method == http.MethodDelete && len(parts) == 1:
		names := strings.Split(parts[0], ",")
		ignore := r.URL.Query().Get("ignore_unavailable") == "true"
		for _, n := range names {
			if strings.ContainsAny(n, "*?") {
				s.reply(w, 400, errBody(400, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed", nil))
				return
			}
			if _, ok := s.indices[n]; !ok && !ignore {
				s.reply(w, 404, notFound(n))
				return
			}
		}
		for _, n := range names {
			delete(s.indices, n)
		}
		s.reply(w, 200, map[string]any{"acknowledged": true})
	default:
		s.reply(w, 400, errBody(400, "illegal_argument_exception", "esfake: unsupported "+r.Method+" "+r.URL.Path, nil))
	}
}

func notFound(index string) map[string]any {
	return errBody(404, "index_not_found_exception", "no such index ["+index+"]",
		map[string]any{"index": index, "resource.type": "index_or_alias", "resource.id": index, "index_uuid": "_na_"})
}

func (s *Server) bulk(w http.ResponseWriter, r *http.Request) {
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var items []any
	hasErr := false
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(line, &action); err != nil || len(action) != 1 {
			s.reply(w, 400, errBody(400, "illegal_argument_exception", "Malformed action/metadata line", nil))
			return
		}
		op, meta := "", action[""]
		for k, v := range action {
			op, meta = k, v
		}
		if op != "index" || !sc.Scan() {
			s.reply(w, 400, errBody(400, "illegal_argument_exception", "esfake: only index actions with a source", nil))
			return
		}
		var src map[string]any
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		res := map[string]any{"_index": meta.Index, "_id": meta.ID}
		if err := dec.Decode(&src); err != nil {
			res["status"], res["error"] = 400, map[string]any{"type": "mapper_parsing_exception", "reason": "failed to parse"}
		} else if len(s.itemFaults) > 0 {
			f := s.itemFaults[0]
			s.itemFaults = s.itemFaults[1:]
			res["status"], res["error"] = f.status, map[string]any{"type": f.typ, "reason": "injected item failure"}
		} else {
			idx := s.indices[meta.Index]
			if idx == nil {
				idx = map[string]map[string]any{}
				s.indices[meta.Index] = idx
			}
			_, existed := idx[meta.ID]
			idx[meta.ID] = src
			res["_version"], res["result"], res["status"] = 1, "created", 201
			if existed {
				res["result"], res["status"] = "updated", 200
			}
			res["_shards"] = map[string]int{"total": 1, "successful": 1, "failed": 0}
		}
		if _, ok := res["error"]; ok {
			hasErr = true
		}
		items = append(items, map[string]any{"index": res})
	}
	for ; s.extraItems > 0; s.extraItems-- {
		items = append(items, map[string]any{"index": map[string]any{"_index": "extra", "_id": "extra", "status": 201, "result": "created"}})
	}
	s.reply(w, 200, map[string]any{"took": 1, "errors": hasErr, "items": items})
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

func (s *Server) search(w http.ResponseWriter, r *http.Request, parts []string) {
	var names []string
	if len(parts) == 2 {
		ignore := r.URL.Query().Get("ignore_unavailable") == "true"
		allowNone := r.URL.Query().Get("allow_no_indices") != "false"
		for _, p := range strings.Split(parts[0], ",") {
			if !strings.ContainsAny(p, "*?") {
				if _, ok := s.indices[p]; !ok {
					if !ignore {
						s.reply(w, 404, notFound(p))
						return
					}
					continue
				}
				names = append(names, p)
				continue
			}
			matched := false
			for _, n := range slices.Sorted(maps.Keys(s.indices)) {
				if ok, _ := path.Match(p, n); ok {
					names, matched = append(names, n), true
				}
			}
			if !matched && !allowNone {
				s.reply(w, 404, notFound(p))
				return
			}
		}
		s.searchedIndices = strings.Split(parts[0], ",")
	} else {
		names = slices.Sorted(maps.Keys(s.indices))
	}
	var body json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		s.reply(w, 400, errBody(400, "parsing_exception", "request body is required", nil))
		return
	}
	s.lastSearchBody = body
	req, err := parseSearch(body)
	if err != nil {
		s.reply(w, 400, errBody(400, "parsing_exception", err.Error(), nil))
		return
	}
	type hit struct {
		index, id string
		src       map[string]any
		sort      []any
	}
	var hits []hit
	for _, n := range names {
		for id, src := range s.indices[n] {
			if req.match(src) {
				hits = append(hits, hit{n, id, src, req.sortValues(src)})
			}
		}
	}
	slices.SortFunc(hits, func(a, b hit) int {
		if c := req.compare(a.sort, b.sort); c != 0 {
			return c
		}
		return cmp.Compare(a.index+a.id, b.index+b.id)
	})
	out := []any{}
	seen := map[any]bool{}
	for _, h := range hits {
		if len(out) == req.size {
			break
		}
		if req.searchAfter != nil && req.compare(h.sort, req.searchAfter) <= 0 {
			continue
		}
		if req.collapse != "" {
			v := key(h.src[req.collapse])
			if seen[v] {
				continue
			}
			seen[v] = true
		}
		src := map[string]any{}
		for k, v := range h.src {
			if len(req.source) == 0 || slices.Contains(req.source, k) {
				src[k] = v
			}
		}
		out = append(out, map[string]any{"_index": h.index, "_id": h.id, "_score": nil, "_source": src, "sort": h.sort})
	}
	res := map[string]any{"took": 1, "timed_out": false,
		"_shards": map[string]int{"total": len(names), "successful": len(names), "skipped": 0, "failed": 0},
		"hits":    map[string]any{"max_score": nil, "hits": out}}
	if len(req.aggs) > 0 {
		srcs := make([]map[string]any, len(hits))
		for i, h := range hits {
			srcs[i] = h.src
		}
		aggs := map[string]any{}
		for name, a := range req.aggs {
			aggs[name] = a.run(srcs)
		}
		res["aggregations"] = aggs
	}
	s.reply(w, 200, res)
}

// aggregation is one bucket aggregation of the subset: terms or composite.
type aggregation interface {
	run(srcs []map[string]any) map[string]any
}

// termsAgg is a terms aggregation on a keyword field: buckets of the distinct values among the
// matching documents, by descending count (ties by key) unless ordered by _key, at most size.
type termsAgg struct {
	field   string
	size    int
	byKey   bool
	keyDesc bool
}

func parseAggs(v json.RawMessage) (map[string]aggregation, error) {
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil {
		return nil, fmt.Errorf("aggs: %w", err)
	}
	out := map[string]aggregation{}
	for name, kinds := range raw {
		for kind, body := range kinds {
			switch kind {
			case "terms":
				a, err := parseTerms(body)
				if err != nil {
					return nil, err
				}
				out[name] = a
			case "composite":
				a, err := parseComposite(body)
				if err != nil {
					return nil, err
				}
				out[name] = a
			default:
				return nil, fmt.Errorf("esfake: unsupported aggregation [%s]", kind)
			}
		}
	}
	return out, nil
}

func parseTerms(body json.RawMessage) (termsAgg, error) {
	var t struct {
		Field string            `json:"field"`
		Size  *int              `json:"size"`
		Order map[string]string `json:"order"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return termsAgg{}, fmt.Errorf("terms: %w", err)
	}
	a := termsAgg{field: t.Field, size: 10}
	if t.Size != nil {
		a.size = *t.Size
	}
	for k, dir := range t.Order {
		if k != "_key" && k != "_count" {
			return termsAgg{}, fmt.Errorf("esfake: terms order on %s", k)
		}
		a.byKey, a.keyDesc = k == "_key", dir == "desc"
	}
	return a, nil
}

// compositeAgg is a composite aggregation (Elasticsearch reference, "Composite
// aggregation"): buckets of every combination of its sources' values, in ascending order of
// the sources, size per page (default 10), the page starting after the key "after" names;
// after_key is the last bucket's key. Sources: terms on a keyword field, date_histogram
// with a fixed_interval on a date field (keys in epoch milliseconds).
type compositeAgg struct {
	size    int
	sources []compositeSource
	after   map[string]any
}

type compositeSource struct {
	name, field string
	intervalMS  int64 // date_histogram; 0 for terms
}

var intervalUnits = map[string]int64{"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}

func parseComposite(body json.RawMessage) (compositeAgg, error) {
	var c struct {
		Size    *int                                    `json:"size"`
		Sources []map[string]map[string]json.RawMessage `json:"sources"`
		After   json.RawMessage                         `json:"after"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return compositeAgg{}, fmt.Errorf("[composite] failed to parse: %w", err)
	}
	a := compositeAgg{size: 10}
	if c.Size != nil {
		if *c.Size <= 0 {
			return compositeAgg{}, fmt.Errorf("[size] must be greater than 0. Found [%d] in [composite]", *c.Size)
		}
		a.size = *c.Size
	}
	if len(c.Sources) == 0 {
		return compositeAgg{}, fmt.Errorf("Composite [sources] cannot be null or empty")
	}
	for _, src := range c.Sources {
		if len(src) != 1 {
			return compositeAgg{}, fmt.Errorf("[composite] each source must have exactly one name")
		}
		for name, kinds := range src {
			if len(kinds) != 1 {
				return compositeAgg{}, fmt.Errorf("[composite] source [%s] must have exactly one type", name)
			}
			for kind, opts := range kinds {
				var o struct {
					Field         string `json:"field"`
					FixedInterval string `json:"fixed_interval"`
				}
				d := json.NewDecoder(bytes.NewReader(opts))
				d.DisallowUnknownFields()
				if err := d.Decode(&o); err != nil {
					return compositeAgg{}, fmt.Errorf("[%s] failed to parse: %w", kind, err)
				}
				if o.Field == "" {
					return compositeAgg{}, fmt.Errorf("[sources] must define [field] or [script] for [%s]", name)
				}
				s := compositeSource{name: name, field: o.Field}
				switch kind {
				case "terms":
					if o.FixedInterval != "" {
						return compositeAgg{}, fmt.Errorf("[terms] unknown field [fixed_interval]")
					}
				case "date_histogram":
					ms, err := parseInterval(o.FixedInterval)
					if err != nil {
						return compositeAgg{}, err
					}
					s.intervalMS = ms
				default:
					return compositeAgg{}, fmt.Errorf("Unknown key for a START_OBJECT in [%s]: [%s].", name, kind)
				}
				a.sources = append(a.sources, s)
			}
		}
	}
	if len(c.After) > 0 {
		d := json.NewDecoder(bytes.NewReader(c.After))
		d.UseNumber()
		if err := d.Decode(&a.after); err != nil {
			return compositeAgg{}, fmt.Errorf("[after] failed to parse: %w", err)
		}
		if len(a.after) != len(a.sources) {
			return compositeAgg{}, fmt.Errorf("[after] has %d value(s) but [sources] has %d", len(a.after), len(a.sources))
		}
		for _, s := range a.sources {
			if _, ok := a.after[s.name]; !ok {
				return compositeAgg{}, fmt.Errorf("[after] has no value for source [%s]", s.name)
			}
		}
	}
	return a, nil
}

// parseInterval reads a fixed_interval: an integer and a unit (ms, s, m, h, d).
func parseInterval(v string) (int64, error) {
	if v == "" {
		return 0, fmt.Errorf("Required one of fields [fixed_interval, calendar_interval], but none were specified.")
	}
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	unit, ok := intervalUnits[v[max(i, 0):]]
	n, err := strconv.ParseInt(v[:max(i, 0)], 10, 64)
	if i <= 0 || !ok || err != nil || n <= 0 {
		return 0, fmt.Errorf("failed to parse setting [date_histogram.fixedInterval] with value [%s] as a time value: unit is missing or unrecognized", v)
	}
	return n * unit, nil
}

// value is a document's value for the source, or false when it has none (the document is
// then in no bucket: missing_bucket is off by default).
func (s compositeSource) value(src map[string]any) (any, bool) {
	v := lookup(src, s.field)
	if s.intervalMS == 0 {
		str, ok := v.(string)
		return str, ok
	}
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	ms, err := n.Int64()
	if err != nil {
		return nil, false
	}
	k := ms / s.intervalMS
	if ms < 0 && ms%s.intervalMS != 0 {
		k--
	}
	return json.Number(strconv.FormatInt(k*s.intervalMS, 10)), true
}

func (a compositeAgg) compareKeys(x, y map[string]any) int {
	for _, s := range a.sources {
		if c := compareValues(x[s.name], y[s.name]); c != 0 {
			return c
		}
	}
	return 0
}

func (a compositeAgg) run(srcs []map[string]any) map[string]any {
	type bucket struct {
		key   map[string]any
		count int
	}
	byKey := map[string]*bucket{}
	for _, src := range srcs {
		key := map[string]any{}
		id := ""
		complete := true
		for _, s := range a.sources {
			v, ok := s.value(src)
			if !ok {
				complete = false
				break
			}
			key[s.name] = v
			id += fmt.Sprintf("%T:%v\x00", v, v)
		}
		if !complete {
			continue
		}
		if b := byKey[id]; b != nil {
			b.count++
		} else {
			byKey[id] = &bucket{key: key, count: 1}
		}
	}
	all := slices.Collect(maps.Values(byKey))
	slices.SortFunc(all, func(x, y *bucket) int { return a.compareKeys(x.key, y.key) })
	buckets := []any{}
	var last map[string]any
	for _, b := range all {
		if a.after != nil && a.compareKeys(b.key, a.after) <= 0 {
			continue
		}
		if len(buckets) == a.size {
			break
		}
		buckets = append(buckets, map[string]any{"key": b.key, "doc_count": b.count})
		last = b.key
	}
	out := map[string]any{"buckets": buckets}
	if last != nil {
		out["after_key"] = last
	}
	return out
}

func (a termsAgg) run(srcs []map[string]any) map[string]any {
	counts := map[string]int{}
	for _, src := range srcs {
		if v, ok := lookup(src, a.field).(string); ok {
			counts[v]++
		}
	}
	keys := slices.Collect(maps.Keys(counts))
	slices.SortFunc(keys, func(x, y string) int {
		switch {
		case a.byKey && a.keyDesc:
			return cmp.Compare(y, x)
		case a.byKey:
			return cmp.Compare(x, y)
		}
		return cmp.Or(cmp.Compare(counts[y], counts[x]), cmp.Compare(x, y))
	})
	other := 0
	for _, k := range keys[min(len(keys), a.size):] {
		other += counts[k]
	}
	buckets := []any{}
	for _, k := range keys[:min(len(keys), a.size)] {
		buckets = append(buckets, map[string]any{"key": k, "doc_count": counts[k]})
	}
	return map[string]any{"doc_count_error_upper_bound": 0, "sum_other_doc_count": other, "buckets": buckets}
}

// searchReq is the parsed DSL subset.
type searchReq struct {
	size        int
	filters     []func(map[string]any) bool
	sortFields  []string
	sortDesc    []bool
	collapse    string
	source      []string
	searchAfter []any
	aggs        map[string]aggregation
}

func parseSearch(body json.RawMessage) (*searchReq, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, err
	}
	req := &searchReq{size: 10}
	for k, v := range raw {
		var err error
		switch k {
		case "size":
			err = json.Unmarshal(v, &req.size)
			if err == nil && (req.size < 0 || req.size > 10000) {
				err = fmt.Errorf("Result window is too large, from + size must be less than or equal to: [10000] but was [%d]", req.size)
			}
		case "track_total_hits":
		case "_source":
			err = json.Unmarshal(v, &req.source)
		case "collapse":
			var c struct {
				Field string `json:"field"`
			}
			err = json.Unmarshal(v, &c)
			req.collapse = c.Field
		case "search_after":
			dec := json.NewDecoder(bytes.NewReader(v))
			dec.UseNumber()
			err = dec.Decode(&req.searchAfter)
		case "sort":
			err = req.parseSort(v)
		case "query":
			err = req.parseQuery(v)
		case "aggs", "aggregations":
			req.aggs, err = parseAggs(v)
		default:
			err = fmt.Errorf("Unknown key for a START_OBJECT in [%s].", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return req, nil
}

func (req *searchReq) parseSort(v json.RawMessage) error {
	var list []map[string]struct {
		Order string `json:"order"`
	}
	if err := json.Unmarshal(v, &list); err != nil {
		return fmt.Errorf("sort: %w", err)
	}
	for _, m := range list {
		for f, o := range m {
			req.sortFields = append(req.sortFields, f)
			req.sortDesc = append(req.sortDesc, o.Order == "desc")
		}
	}
	return nil
}

func (req *searchReq) parseQuery(v json.RawMessage) error {
	var q struct {
		Bool map[string]json.RawMessage `json:"bool"`
	}
	if err := json.Unmarshal(v, &q); err != nil || q.Bool == nil {
		return fmt.Errorf("esfake: only bool queries")
	}
	for k, v := range q.Bool {
		if k != "filter" {
			return fmt.Errorf("esfake: only bool.filter, got %s", k)
		}
		var clauses []map[string]map[string]json.RawMessage
		if err := json.Unmarshal(v, &clauses); err != nil {
			return fmt.Errorf("filter: %w", err)
		}
		for _, c := range clauses {
			for kind, body := range c {
				for field, arg := range body {
					f, err := clause(kind, field, arg)
					if err != nil {
						return err
					}
					req.filters = append(req.filters, f)
				}
			}
		}
	}
	return nil
}

// clause compiles term, terms and range. Values compare exactly: term on keyword is exact,
// no analysis, no wildcard.
func clause(kind, field string, arg json.RawMessage) (func(map[string]any) bool, error) {
	dec := func(v any) error {
		d := json.NewDecoder(bytes.NewReader(arg))
		d.UseNumber()
		return d.Decode(v)
	}
	switch kind {
	case "term":
		var v any
		if err := dec(&v); err != nil {
			return nil, err
		}
		if m, ok := v.(map[string]any); ok {
			return nil, fmt.Errorf("esfake: term with options %v", m)
		}
		return func(src map[string]any) bool {
			got := lookup(src, field)
			if list, ok := got.([]any); ok { // an array field: a term matches any element
				return slices.ContainsFunc(list, func(e any) bool { return key(e) == key(v) })
			}
			return key(got) == key(v)
		}, nil
	case "terms":
		var vs []any
		if err := dec(&vs); err != nil {
			return nil, err
		}
		set := map[any]bool{}
		for _, v := range vs {
			set[key(v)] = true
		}
		return func(src map[string]any) bool { return set[key(lookup(src, field))] }, nil
	case "range":
		var r map[string]json.Number
		if err := dec(&r); err != nil {
			return nil, err
		}
		for op := range r {
			if op != "gte" && op != "lte" && op != "gt" && op != "lt" {
				return nil, fmt.Errorf("esfake: range %s", op)
			}
		}
		return func(src map[string]any) bool {
			n, ok := lookup(src, field).(json.Number)
			if !ok {
				return false
			}
			x, _ := n.Int64()
			for op, bound := range r {
				b, _ := bound.Int64()
				if (op == "gte" && x < b) || (op == "lte" && x > b) || (op == "gt" && x <= b) || (op == "lt" && x >= b) {
					return false
				}
			}
			return true
		}, nil
	}
	return nil, fmt.Errorf("esfake: unsupported query [%s]", kind)
}

// lookup reads a field; bk.<key> reads key of the flattened bk object, dots included.
func lookup(src map[string]any, field string) any {
	if k, ok := strings.CutPrefix(field, "bk."); ok {
		bk, _ := src["bk"].(map[string]any)
		return bk[k]
	}
	return src[field]
}

// key makes JSON values comparable (json.Number by its text).
func key(v any) any {
	if n, ok := v.(json.Number); ok {
		return "n:" + n.String()
	}
	return v
}

func (req *searchReq) match(src map[string]any) bool {
	for _, f := range req.filters {
		if !f(src) {
			return false
		}
	}
	return true
}

func (req *searchReq) sortValues(src map[string]any) []any {
	out := make([]any, len(req.sortFields))
	for i, f := range req.sortFields {
		out[i] = src[f]
	}
	return out
}

func (req *searchReq) compare(a, b []any) int {
	for i := range req.sortFields {
		c := compareValues(a[i], b[i])
		if req.sortDesc[i] {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

func compareValues(a, b any) int {
	switch x := a.(type) {
	case json.Number:
		y, _ := b.(json.Number)
		xi, _ := x.Int64()
		yi, _ := y.Int64()
		return cmp.Compare(xi, yi)
	case string:
		y, _ := b.(string)
		return cmp.Compare(x, y)
	}
	return 0
}
