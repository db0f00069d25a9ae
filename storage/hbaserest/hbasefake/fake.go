// Package hbasefake is an in-test HBase REST gateway on 127.0.0.1 reproducing the documented
// responses the store relies on: JSON CellSets with base64 keys and values, 404 for missing
// rows, tables and namespaces, multiget (404 when no row exists), table schema GET/PUT,
// scanners (PUT → 201 + Location, GET → 200 cells / 204 exhausted, DELETE), and the atomic
// check-and-put / check-and-delete of one row (PUT /{table}/{row}?check=put|delete: the last
// cell is the check, 200 applied, 304 the check failed, 400 a malformed request; an empty
// check value matches a missing or empty cell, as HBase's checkAndMutate does). Fail injects
// error statuses for the retry tests; FailAfter applies a request and then loses its reply.
package hbasefake

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/mercury-apm/mercury/storage/hbaserest"
)

// Server is the fake gateway.
type Server struct {
	*httptest.Server

	mu         sync.Mutex
	namespaces map[string]bool
	tables     map[string]*table
	scanners   map[string]*scanner
	nextID     int
	faults     []*fault
	calls      map[string]int
}

type table struct {
	schema hbaserest.TableSchema
	rows   map[string]map[string][]byte // row key → column → value
}

type scanner struct {
	table string
	cells []cell
	batch int
}

type cell struct{ row, column string }

type fault struct {
	method, op string
	status     int
	times      int
	after      bool // apply the request, then answer status (a reply lost on the way)
}

// New starts a fake gateway; Close stops it.
func New() *Server {
	s := &Server{namespaces: map[string]bool{"default": true, "hbase": true}, tables: map[string]*table{},
		scanners: map[string]*scanner{}, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Fail makes the next times requests with method and operation op ("put", "check" (a
// check-and-put or check-and-delete), "get", "multiget", "schema", "scanner", "namespace";
// "" for any) fail with status.
func (s *Server) Fail(method, op string, status, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{method: method, op: op, status: status, times: times})
}

// FailAfter makes the next times requests with method and op take effect and then answer
// status instead of their reply: what a client sees when the connection breaks after the
// server applied the write.
func (s *Server) FailAfter(method, op string, status, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{method: method, op: op, status: status, times: times, after: true})
}

// Heal drops the faults not used up yet: the server answers normally again.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Calls returns how many requests of method and op reached the server (failed ones included).
func (s *Server) Calls(method, op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method+" "+op]
}

// OpenScanners is the number of scanners not deleted yet.
func (s *Server) OpenScanners() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.scanners)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	var seg []string
	for _, p := range strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		seg = append(seg, u)
	}
	op := "get"
	switch {
	case len(seg) == 2 && seg[0] == "namespaces":
		op = "namespace"
	case len(seg) >= 2 && (seg[1] == "schema" || seg[1] == "multiget" || seg[1] == "scanner"):
		op = seg[1]
	case (r.Method == http.MethodPut || r.Method == http.MethodPost) && r.URL.Query().Has("check"):
		op = "check"
	case r.Method == http.MethodPut || r.Method == http.MethodPost:
		op = "put"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[r.Method+" "+op]++
	for _, f := range s.faults {
		if f.times > 0 && (f.method == "" || f.method == r.Method) && (f.op == "" || f.op == op) {
			f.times--
			if f.after {
				defer http.Error(w, http.StatusText(f.status), f.status)
				w = discard{}
				break
			}
			http.Error(w, http.StatusText(f.status), f.status)
			return
		}
	}
	if r.Method == http.MethodGet && r.Header.Get("Accept") != "application/json" {
		http.Error(w, "Not Acceptable", http.StatusNotAcceptable)
		return
	}
	switch op {
	case "namespace":
		s.namespace(w, r, seg[1])
	case "schema":
		s.schema(w, r, seg[0])
	case "multiget":
		s.multiget(w, r, seg[0])
	case "check":
		if len(seg) != 2 {
			http.Error(w, "Bad request", http.StatusBadRequest)
			return
		}
		s.check(w, r, seg[0], seg[1])
	case "scanner":
		s.scanner(w, r, seg)
	default:
		if len(seg) != 2 {
			http.Error(w, "Bad request", http.StatusBadRequest)
			return
		}
		s.row(w, r, seg[0], seg[1])
	}
}

func (s *Server) namespace(w http.ResponseWriter, r *http.Request, ns string) {
	switch r.Method {
	case http.MethodGet:
		if !s.namespaces[ns] {
			http.Error(w, "Not found", http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	case http.MethodPost, http.MethodPut:
		if s.namespaces[ns] {
			http.Error(w, "Namespace already exists", http.StatusForbidden)
			return
		}
		s.namespaces[ns] = true
		w.WriteHeader(http.StatusCreated)
	default:
		http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) schema(w http.ResponseWriter, r *http.Request, name string) {
	t := s.tables[name]
	switch r.Method {
	case http.MethodGet:
		if t == nil {
			http.Error(w, "Not found", http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, t.schema)
	case http.MethodPut, http.MethodPost:
		var sc hbaserest.TableSchema
		if err := json.NewDecoder(r.Body).Decode(&sc); err != nil || len(sc.ColumnSchema) == 0 {
			http.Error(w, "Bad request", http.StatusBadRequest)
			return
		}
		if ns, _, ok := strings.Cut(name, ":"); ok && !s.namespaces[ns] {
			http.Error(w, "Not found: namespace "+ns, http.StatusNotFound)
			return
		}
		sc.Name = name
		if t != nil {
			t.schema = sc
			w.WriteHeader(http.StatusOK)
			return
		}
		s.tables[name] = &table{schema: sc, rows: map[string]map[string][]byte{}}
		w.WriteHeader(http.StatusCreated)
	default:
		http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) row(w http.ResponseWriter, r *http.Request, name, key string) {
	t := s.tables[name]
	if t == nil {
		http.Error(w, "Not found", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
		cs := t.cellSet([]string{key})
		if len(cs.Row) == 0 {
			http.Error(w, "Not found", http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, cs)
	case http.MethodPut, http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		var cs hbaserest.CellSet
		if err := json.Unmarshal(body, &cs); err != nil {
			http.Error(w, "Bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		// Validate everything first: the real gateway applies a CellSet as one batch.
		for _, row := range cs.Row {
			if !t.families(w, row.Cell) {
				return
			}
		}
		for _, row := range cs.Row {
			t.put(string(row.Key), row.Cell)
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodDelete:
		delete(t.rows, key)
		w.WriteHeader(http.StatusOK)
	default:
		http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
	}
}

// families answers 404 unless every cell names a family of the table.
func (t *table) families(w http.ResponseWriter, cells []hbaserest.Cell) bool {
	for _, c := range cells {
		fam, _, _ := strings.Cut(string(c.Column), ":")
		if !slices.ContainsFunc(t.schema.ColumnSchema, func(cs hbaserest.ColumnSchema) bool { return cs.Name == fam }) {
			http.Error(w, "Not found: column family "+fam, http.StatusNotFound)
			return false
		}
	}
	return true
}

func (t *table) put(key string, cells []hbaserest.Cell) {
	cols := t.rows[key]
	if cols == nil {
		cols = map[string][]byte{}
		t.rows[key] = cols
	}
	for _, c := range cells {
		cols[string(c.Column)] = c.Value
	}
}

// check is the gateway's RowResource.checkAndPut / checkAndDelete: one row, the last cell
// names the column to check and the value it must hold. An empty value matches a missing or
// empty cell (checkAndMutate's rule for a null comparand), which is how a client creates a
// row only if it does not exist.
func (s *Server) check(w http.ResponseWriter, r *http.Request, name, urlKey string) {
	t := s.tables[name]
	if t == nil {
		http.Error(w, "Not found", http.StatusNotFound)
		return
	}
	mode := strings.ToLower(r.URL.Query().Get("check"))
	if mode != "put" && mode != "delete" {
		http.Error(w, "Invalid check value '"+r.URL.Query().Get("check")+"'", http.StatusBadRequest)
		return
	}
	var cs hbaserest.CellSet
	if err := json.NewDecoder(r.Body).Decode(&cs); err != nil {
		http.Error(w, "Bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(cs.Row) != 1 {
		http.Error(w, "Bad request: Number of rows specified is not 1.", http.StatusBadRequest)
		return
	}
	key, cells := string(cs.Row[0].Key), cs.Row[0].Cell
	if key == "" {
		key = urlKey
	}
	if len(cells) == 0 || (mode == "put" && len(cells) == 1) {
		http.Error(w, "Bad request: Either row key is null or no data found for columns specified.", http.StatusBadRequest)
		return
	}
	chk, rest := cells[len(cells)-1], cells[:len(cells)-1]
	if fam, qual, ok := strings.Cut(string(chk.Column), ":"); !ok || fam == "" || (mode == "put" && qual == "") {
		http.Error(w, "Bad request: Column incorrectly specified.", http.StatusBadRequest)
		return
	}
	for _, c := range rest {
		if mode == "put" && !strings.Contains(string(c.Column), ":") {
			http.Error(w, "Bad request", http.StatusBadRequest)
			return
		}
	}
	if mode == "put" && !slices.ContainsFunc(rest, func(c hbaserest.Cell) bool { return string(c.Column) == string(chk.Column) }) {
		http.Error(w, "Bad request: The column to put and check do not match.", http.StatusBadRequest)
		return
	}
	if !t.families(w, cells) {
		return
	}
	cur, exists := t.rows[key][string(chk.Column)]
	if len(chk.Value) == 0 && len(cur) != 0 || len(chk.Value) != 0 && (!exists || string(cur) != string(chk.Value)) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if mode == "put" {
		t.put(key, rest)
		w.WriteHeader(http.StatusOK)
		return
	}
	if len(rest) == 0 { // a lone check cell deletes itself
		rest = cells
	}
	cols := t.rows[key]
	for _, c := range rest {
		if fam, _, ok := strings.Cut(string(c.Column), ":"); !ok {
			for col := range cols {
				if strings.HasPrefix(col, fam+":") {
					delete(cols, col)
				}
			}
		} else {
			delete(cols, string(c.Column))
		}
	}
	if len(cols) == 0 {
		delete(t.rows, key)
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) multiget(w http.ResponseWriter, r *http.Request, name string) {
	t := s.tables[name]
	if t == nil {
		http.Error(w, "Not found", http.StatusNotFound)
		return
	}
	cs := t.cellSet(r.URL.Query()["row"])
	if len(cs.Row) == 0 {
		http.Error(w, "Not found", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, cs)
}

func (t *table) cellSet(keys []string) hbaserest.CellSet {
	var cs hbaserest.CellSet
	for _, k := range keys {
		if cols := t.rows[k]; len(cols) > 0 {
			cs.Row = append(cs.Row, t.rowOf(k, slices.Sorted(maps.Keys(cols))))
		}
	}
	return cs
}

func (t *table) rowOf(key string, columns []string) hbaserest.Row {
	row := hbaserest.Row{Key: []byte(key)}
	for _, c := range columns {
		row.Cell = append(row.Cell, hbaserest.Cell{Column: []byte(c), Timestamp: 1, Value: t.rows[key][c]})
	}
	return row
}

func (s *Server) scanner(w http.ResponseWriter, r *http.Request, seg []string) {
	name := seg[0]
	if len(seg) == 2 {
		t := s.tables[name]
		if t == nil {
			http.Error(w, "Not found", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var spec hbaserest.ScannerSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			http.Error(w, "Bad request", http.StatusBadRequest)
			return
		}
		sc := &scanner{table: name, batch: max(spec.Batch, 1)}
		for _, k := range slices.Sorted(maps.Keys(t.rows)) {
			if (len(spec.StartRow) > 0 && k < string(spec.StartRow)) || (len(spec.EndRow) > 0 && k >= string(spec.EndRow)) {
				continue
			}
			for _, c := range slices.Sorted(maps.Keys(t.rows[k])) {
				sc.cells = append(sc.cells, cell{k, c})
			}
		}
		s.nextID++
		id := fmt.Sprintf("%d", 1700000000000+s.nextID)
		s.scanners[id] = sc
		w.Header().Set("Location", s.URL+"/"+url.PathEscape(name)+"/scanner/"+id)
		w.WriteHeader(http.StatusCreated)
		return
	}
	sc := s.scanners[seg[2]]
	if len(seg) != 3 || sc == nil || sc.table != name {
		http.Error(w, "Not found", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
		if len(sc.cells) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		page := sc.cells[:min(sc.batch, len(sc.cells))]
		sc.cells = sc.cells[len(page):]
		t := s.tables[name]
		var cs hbaserest.CellSet
		for i := 0; i < len(page); {
			j := i
			var cols []string
			for ; j < len(page) && page[j].row == page[i].row; j++ {
				cols = append(cols, page[j].column)
			}
			cs.Row = append(cs.Row, t.rowOf(page[i].row, cols))
			i = j
		}
		writeJSON(w, http.StatusOK, cs)
	case http.MethodDelete:
		delete(s.scanners, seg[2])
		w.WriteHeader(http.StatusOK)
	default:
		http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
	}
}

// discard swallows a reply that FailAfter replaces.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
