package agentsql_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"modernc.org/sqlite"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/agentsql"
	"github.com/mercury-apm/mercury/agent/internal/agenttest"
	"github.com/mercury-apm/mercury/schemas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var registered atomic.Int32

func TestSQLite(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	driverName := fmt.Sprintf("sqlite-traced-%d", registered.Add(1)) // sql.Register is once per name
	agentsql.Register(driverName, a, &sqlite.Driver{}, agentsql.WithPeer("orders"))
	db, err := sql.Open(driverName, filepath.Join(t.TempDir(), "orders.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, root := a.StartSpan(context.Background(), "checkout")
	exec := func(db interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}, q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	exec(db, "CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT, total REAL)")
	exec(db, "INSERT INTO orders (id, name, total) VALUES (?, ?, ?)", 1, "alice", 9.5)
	exec(db, "INSERT INTO orders (id, name, total)\n  VALUES (2, 'bob', 3.25)")

	rows, err := db.QueryContext(ctx, "SELECT id, name FROM orders WHERE id IN (1, 2) ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var id int
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	if rows.Close(); len(names) != 2 || names[0] != "alice" || names[1] != "bob" {
		t.Fatalf("rows %v", names)
	}
	var name string
	if err := db.QueryRowContext(ctx, "SELECT name FROM orders WHERE id = ?", 99).Scan(&name); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("no rows: %v", err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	exec(tx, "INSERT INTO orders (id, name) VALUES (?, ?)", 3, "carol")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	exec(tx, "INSERT INTO orders (id, name) VALUES (?, ?)", 4, "dave")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}

	stmt, err := db.PrepareContext(ctx, "UPDATE orders SET total = total + ? WHERE id = ?")
	if err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 2; id++ {
		if _, err := stmt.ExecContext(ctx, 0.5, id); err != nil {
			t.Fatal(err)
		}
	}
	stmt.Close()
	var count int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&count); err != nil || count != 3 {
		t.Fatalf("count %d, %v: commit or rollback did not happen", count, err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO no_such_table VALUES ('secret')"); err == nil {
		t.Fatal("insert into a missing table succeeded")
	}
	root.End()
	db.Close()

	spans, events := agenttest.Records(t, a)
	want := []struct {
		op     string
		status schemas.Status
	}{
		{"CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT, total REAL)", schemas.StatusOK},
		{"INSERT INTO orders (id, name, total) VALUES (?, ?, ?)", schemas.StatusOK},
		{"INSERT INTO orders (id, name, total) VALUES (?, ?, ?)", schemas.StatusOK},
		{"SELECT id, name FROM orders WHERE id IN (?) ORDER BY id", schemas.StatusOK},
		{"SELECT name FROM orders WHERE id = ?", schemas.StatusOK},
		{"BEGIN", schemas.StatusOK},
		{"INSERT INTO orders (id, name) VALUES (?, ?)", schemas.StatusOK},
		{"COMMIT", schemas.StatusOK},
		{"BEGIN", schemas.StatusOK},
		{"INSERT INTO orders (id, name) VALUES (?, ?)", schemas.StatusOK},
		{"ROLLBACK", schemas.StatusOK},
		{"UPDATE orders SET total = total + ? WHERE id = ?", schemas.StatusOK},
		{"UPDATE orders SET total = total + ? WHERE id = ?", schemas.StatusOK},
		{"SELECT count(*) FROM orders", schemas.StatusOK},
		{"INSERT INTO no_such_table VALUES (?)", schemas.StatusError},
		{"checkout", schemas.StatusUnset},
	}
	if len(spans) != len(want) {
		for _, s := range spans {
			t.Logf("%s", s.Operation)
		}
		t.Fatalf("%d spans, want %d", len(spans), len(want))
	}
	rootRec := spans[len(spans)-1]
	for i, w := range want[:len(want)-1] {
		s := spans[i]
		if s.Operation != w.op || s.Status != w.status {
			t.Errorf("span %d: %q %v, want %q %v", i, s.Operation, s.Status, w.op, w.status)
		}
		if s.TraceID != rootRec.TraceID || s.ParentSpanID != rootRec.SpanID || s.Kind != schemas.KindClient || s.Peer != "orders" {
			t.Errorf("span %d %q: not a client child of the root: %+v", i, s.Operation, s)
		}
	}
	failed := spans[len(spans)-2]
	if failed.ErrorType != "*sqlite.Error" || len(events) != 1 || events[0].Name != "*sqlite.Error" {
		t.Fatalf("failed statement: %q, events %+v", failed.ErrorType, events)
	}
}

func TestOpenDBAndSwitches(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	dsn := filepath.Join(t.TempDir(), "c.db")
	db := agentsql.OpenDB(dsnConnector{dsn, &sqlite.Driver{}}, a, agentsql.WithPeer("cart"))
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (v TEXT)"); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(agent.RemoteConfig{Version: "no-sql", Switches: map[string]bool{"sql": false}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO t VALUES ('x')"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	spans, _ := agenttest.Records(t, a)
	if len(spans) != 1 || spans[0].Peer != "cart" || spans[0].Operation != "CREATE TABLE t (v TEXT)" {
		t.Fatalf("spans %+v", spans)
	}
}

type dsnConnector struct {
	dsn string
	d   driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.d }

// oldDriver has only the mandatory interfaces, as drivers written before Go 1.8 do, and a
// connector that can be closed. Every optional interface the wrapper implements must fall
// back the way database/sql does without the wrapper.
type oldDriver struct{ execs, closed int }

type oldConn struct{ d *oldDriver }
type oldStmt struct{ d *oldDriver }
type oldTx struct{}
type oldConnector struct{ d *oldDriver }

func (d *oldDriver) Open(string) (driver.Conn, error)               { return oldConn{d}, nil }
func (d *oldDriver) OpenConnector(string) (driver.Connector, error) { return oldConnector{d}, nil }
func (c oldConnector) Connect(context.Context) (driver.Conn, error) { return oldConn{c.d}, nil }
func (c oldConnector) Driver() driver.Driver                        { return c.d }
func (c oldConnector) Close() error                                 { c.d.closed++; return nil }
func (c oldConn) Prepare(q string) (driver.Stmt, error) {
	if q == "bad" {
		return nil, errors.New("syntax error")
	}
	return oldStmt{c.d}, nil
}
func (oldConn) Close() error              { return nil }
func (oldConn) Begin() (driver.Tx, error) { return oldTx{}, nil }
func (oldTx) Commit() error               { return nil }
func (oldTx) Rollback() error             { return nil }
func (oldStmt) Close() error              { return nil }
func (oldStmt) NumInput() int             { return -1 }
func (s oldStmt) Exec([]driver.Value) (driver.Result, error) {
	s.d.execs++
	return driver.RowsAffected(1), nil
}
func (oldStmt) Query([]driver.Value) (driver.Rows, error) { return oldRows{}, nil }

type oldRows struct{}

func (oldRows) Columns() []string         { return []string{"v"} }
func (oldRows) Close() error              { return nil }
func (oldRows) Next([]driver.Value) error { return io.EOF }

func TestOldDriverFallbacks(t *testing.T) {
	a := agenttest.New(t, agent.Config{})
	d := &oldDriver{}
	w := agentsql.Wrap(d, a, agentsql.WithPeer("legacy"))
	if _, ok := w.(driver.DriverContext); !ok {
		t.Fatal("the wrapper hid the driver's OpenConnector")
	}
	c, err := w.(driver.DriverContext).OpenConnector("dsn")
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	ctx := context.Background()
	// No ExecerContext underneath: the wrapper answers ErrSkip, database/sql prepares, and the
	// statement's execution is the one span.
	if _, err := db.ExecContext(ctx, "UPDATE t SET v = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "UPDATE t SET v = ?", sql.Named("v", 1)); err == nil {
		t.Fatal("named parameters accepted by a driver that cannot take them")
	}
	if rows, err := db.QueryContext(ctx, "SELECT v FROM t"); err != nil {
		t.Fatal(err)
	} else {
		rows.Close()
	}
	if _, err := db.ExecContext(ctx, "bad"); err == nil {
		t.Fatal("prepare error lost")
	}
	if _, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}); err == nil {
		t.Fatal("read-only transaction on a driver without BeginTx")
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if d.execs != 1 || d.closed != 1 {
		t.Fatalf("execs %d (want 1), connector closed %d times (want 1)", d.execs, d.closed)
	}
	spans, _ := agenttest.Records(t, a)
	var got []string
	for _, s := range spans {
		got = append(got, s.Operation+"/"+s.Status.String())
	}
	want := []string{"UPDATE t SET v = ?/OK", "UPDATE t SET v = ?/ERROR", "SELECT v FROM t/OK", "BEGIN/ERROR", "BEGIN/OK", "COMMIT/OK"}
	if len(got) != len(want) {
		t.Fatalf("spans %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("spans %v, want %v", got, want)
		}
	}
}

func TestUnsampledTraceRecordsNoStatements(t *testing.T) {
	a := agenttest.New(t, agent.Config{SampleRate: 1e-9})
	db := agentsql.OpenDB(dsnConnector{filepath.Join(t.TempDir(), "u.db"), &sqlite.Driver{}}, a)
	defer db.Close()
	ctx, root := a.StartSpan(context.Background(), "unsampled request")
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (v INTEGER)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO nope VALUES (1)"); err == nil {
		t.Fatal("insert into a missing table succeeded")
	}
	root.End()
	db.Close()
	spans, events := agenttest.Records(t, a)
	if len(spans) != 0 {
		t.Fatalf("unsampled trace recorded %d spans", len(spans))
	}
	if len(events) != 1 { // exceptions are never sampled: alerts must not depend on sampling
		t.Fatalf("%d exception events, want 1", len(events))
	}
}
