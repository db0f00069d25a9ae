package agentsql

import (
	"context"
	"database/sql/driver"
	"errors"
)

// conn traces a driver connection. It implements the context interfaces database/sql
// prefers; each one falls back the way database/sql itself would when the wrapped connection
// lacks it, so wrapping changes no behaviour.
type conn struct {
	driver.Conn // Close
	t           *tracer
}

var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
)

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext is not a span of its own (the statement's executions are); its statement
// remembers the normalized query so executions do not normalize again.
func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var s driver.Stmt
	var err error
	if pc, ok := c.Conn.(driver.ConnPrepareContext); ok {
		s, err = pc.PrepareContext(ctx, query)
	} else {
		s, err = c.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return wrapStmt(s, c, query), nil
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	s := c.t.startNamed(ctx, "BEGIN")
	var tx driver.Tx
	var err error
	if bt, ok := c.Conn.(driver.ConnBeginTx); ok {
		tx, err = bt.BeginTx(ctx, opts)
	} else if opts.Isolation != 0 { // database/sql's own answers for drivers without BeginTx
		err = errors.New("sql: driver does not support non-default isolation level")
	} else if opts.ReadOnly {
		err = errors.New("sql: driver does not support read-only transactions")
	} else {
		tx, err = c.Conn.Begin()
	}
	c.t.end(s, err)
	if err != nil {
		return nil, err
	}
	return &txn{Tx: tx, t: c.t, ctx: ctx}, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	op := func() string { return Normalize(query) }
	if ec, ok := c.Conn.(driver.ExecerContext); ok {
		return run(c.t, ctx, op, args, func() (driver.Result, error) { return ec.ExecContext(ctx, query, args) }, nil)
	}
	if e, ok := c.Conn.(driver.Execer); ok { // old drivers only have Execer
		return run(c.t, ctx, op, args, nil, func(v []driver.Value) (driver.Result, error) { return e.Exec(query, v) })
	}
	return nil, driver.ErrSkip // database/sql prepares the statement instead
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	op := func() string { return Normalize(query) }
	if qc, ok := c.Conn.(driver.QueryerContext); ok {
		return run(c.t, ctx, op, args, func() (driver.Rows, error) { return qc.QueryContext(ctx, query, args) }, nil)
	}
	if q, ok := c.Conn.(driver.Queryer); ok {
		return run(c.t, ctx, op, args, nil, func(v []driver.Value) (driver.Rows, error) { return q.Query(query, v) })
	}
	return nil, driver.ErrSkip
}

// run traces one call: withCtx when the driver has the context-aware method, else plain,
// the pre-Go-1.8 method, which takes neither names nor a context (database/sql then checks
// the context itself before calling, and so does run).
func run[T any](t *tracer, ctx context.Context, op func() string, args []driver.NamedValue,
	withCtx func() (T, error), plain func([]driver.Value) (T, error)) (T, error) {
	s := t.start(ctx, op)
	var res T
	var err error
	if withCtx != nil {
		res, err = withCtx()
	} else if vals, verr := values(args); verr != nil {
		err = verr
	} else if err = ctx.Err(); err == nil {
		res, err = plain(vals)
	}
	t.end(s, err)
	return res, err
}

// Ping is not traced: pool health checks are not the application's calls.
func (c *conn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil // database/sql: a connection without Pinger is assumed alive
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if nvc, ok := c.Conn.(driver.NamedValueChecker); ok {
		return nvc.CheckNamedValue(nv)
	}
	return driver.ErrSkip // database/sql: use the default conversion
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// values converts arguments for the pre-context driver interfaces, which cannot take names.
func values(args []driver.NamedValue) ([]driver.Value, error) {
	out := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, errors.New("sql: driver does not support the use of Named Parameters")
		}
		out[i] = a.Value
	}
	return out, nil
}

// txn traces COMMIT and ROLLBACK as children of the context the transaction began with
// (driver.Tx's methods take none).
type txn struct {
	driver.Tx
	t   *tracer
	ctx context.Context
}

func (x *txn) Commit() error {
	s := x.t.startNamed(x.ctx, "COMMIT")
	err := x.Tx.Commit()
	x.t.end(s, err)
	return err
}

func (x *txn) Rollback() error {
	s := x.t.startNamed(x.ctx, "ROLLBACK")
	err := x.Tx.Rollback()
	x.t.end(s, err)
	return err
}

// stmt traces a prepared statement's executions.
type stmt struct {
	driver.Stmt // Close, NumInput
	c           *conn
	query       string
	op          string // normalized once, the first time a recorded span needs it
}

// stmtConverter keeps driver.ColumnConverter when the wrapped statement has it: database/sql
// consults it after the NamedValueChecker answers driver.ErrSkip.
type stmtConverter struct{ *stmt }

func (s stmtConverter) ColumnConverter(idx int) driver.ValueConverter {
	return s.Stmt.(driver.ColumnConverter).ColumnConverter(idx)
}

func wrapStmt(s driver.Stmt, c *conn, query string) driver.Stmt {
	w := &stmt{Stmt: s, c: c, query: query}
	if _, ok := s.(driver.ColumnConverter); ok {
		return stmtConverter{w}
	}
	return w
}

var (
	_ driver.StmtExecContext   = (*stmt)(nil)
	_ driver.StmtQueryContext  = (*stmt)(nil)
	_ driver.NamedValueChecker = (*stmt)(nil)
)

func (s *stmt) operation() string {
	if s.op == "" {
		s.op = Normalize(s.query) // a statement is used by one connection at a time
	}
	return s.op
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if ec, ok := s.Stmt.(driver.StmtExecContext); ok {
		return run(s.c.t, ctx, s.operation, args, func() (driver.Result, error) { return ec.ExecContext(ctx, args) }, nil)
	}
	return run(s.c.t, ctx, s.operation, args, nil, s.Stmt.Exec)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if qc, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return run(s.c.t, ctx, s.operation, args, func() (driver.Rows, error) { return qc.QueryContext(ctx, args) }, nil)
	}
	return run(s.c.t, ctx, s.operation, args, nil, s.Stmt.Query)
}

// CheckNamedValue: database/sql asks the statement's checker, else the connection's; the
// wrapper always has one, so it asks the same two in the same order.
func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if nvc, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return nvc.CheckNamedValue(nv)
	}
	return s.c.CheckNamedValue(nv)
}
