// Package agentsql traces database/sql with a Mercury agent by wrapping the driver: every
// statement, BEGIN, COMMIT and ROLLBACK is a client span (KindClient, CategorySQL) whose peer
// is the database name and whose operation is the statement with its literals removed (see
// Normalize). Business code keeps using *sql.DB and passes its context.
//
//	agentsql.Register("orders-sqlite", a, &sqlite.Driver{}, agentsql.WithPeer("orders"))
//	db, err := sql.Open("orders-sqlite", dsn)
//
// or, for drivers that offer a Connector: db := agentsql.OpenDB(connector, a, ...).
//
// The wrapper claims no capability the wrapped driver lacks: where database/sql would treat
// a missing optional interface as "fall back" (ExecerContext, NamedValueChecker), the wrapper
// answers driver.ErrSkip so the fallback happens exactly as without it; where a missing one
// means a neutral answer (Pinger, SessionResetter, Validator), the wrapper gives that answer.
// A query's span covers the call that returns the rows, not their iteration: rows pass
// through unwrapped so every optional Rows interface of the driver keeps working.
package agentsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/schemas"
)

// Option configures the wrapper.
type Option func(*tracer)

// WithPeer names the database the spans call (the peer in call graphs); default "database",
// or the registered driver name with Register.
func WithPeer(name string) Option { return func(t *tracer) { t.peer = name } }

// tracer starts and ends the spans of one wrapped driver.
type tracer struct {
	a    *agent.Agent
	peer string
}

func newTracer(a *agent.Agent, opts []Option) *tracer {
	t := &tracer{a: a, peer: "database"}
	for _, o := range opts {
		o(t)
	}
	return t
}

// start starts a span for a statement; op is computed only for recorded spans, because
// normalizing costs more than an unsampled span.
func (t *tracer) start(ctx context.Context, op func() string) *agent.Span {
	_, s := t.a.Start(ctx, "", agent.KindClient, agent.CategorySQL)
	if s.Sampled() {
		s.SetOperation(op())
		s.SetPeer(t.peer)
	}
	return s
}

func (t *tracer) startNamed(ctx context.Context, op string) *agent.Span {
	return t.start(ctx, func() string { return op })
}

// end closes a span with the call's outcome. driver.ErrSkip means the call did not happen:
// database/sql retries another way, and that attempt has its own span.
func (t *tracer) end(s *agent.Span, err error) {
	switch {
	case errors.Is(err, driver.ErrSkip):
		s.Discard()
		return
	case err == nil, errors.Is(err, sql.ErrNoRows): // no rows is an answer, not a failure
		s.SetStatus(schemas.StatusOK, 0)
	default:
		s.RecordError(err)
	}
	s.End()
}

// Wrap returns a driver whose connections trace every statement with a.
func Wrap(d driver.Driver, a *agent.Agent, opts ...Option) driver.Driver {
	w := &wrappedDriver{d: d, t: newTracer(a, opts)}
	if _, ok := d.(driver.DriverContext); ok {
		return &wrappedDriverContext{w}
	}
	return w
}

// Register wraps d and registers it with database/sql under name; the peer defaults to name.
// Like sql.Register, it panics if name is taken.
func Register(name string, a *agent.Agent, d driver.Driver, opts ...Option) {
	sql.Register(name, Wrap(d, a, append([]Option{WithPeer(name)}, opts...)...))
}

// WrapConnector returns a connector whose connections trace every statement with a.
func WrapConnector(c driver.Connector, a *agent.Agent, opts ...Option) driver.Connector {
	return wrapConnector(c, &wrappedDriver{d: c.Driver(), t: newTracer(a, opts)})
}

// OpenDB is sql.OpenDB over a traced connector.
func OpenDB(c driver.Connector, a *agent.Agent, opts ...Option) *sql.DB {
	return sql.OpenDB(WrapConnector(c, a, opts...))
}

type wrappedDriver struct {
	d driver.Driver
	t *tracer
}

func (w *wrappedDriver) Open(name string) (driver.Conn, error) {
	c, err := w.d.Open(name)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, t: w.t}, nil
}

// wrappedDriverContext keeps driver.DriverContext when the wrapped driver has it: sql.Open
// then parses the DSN once, through the driver's own connector.
type wrappedDriverContext struct{ *wrappedDriver }

func (w *wrappedDriverContext) OpenConnector(name string) (driver.Connector, error) {
	c, err := w.d.(driver.DriverContext).OpenConnector(name)
	if err != nil {
		return nil, err
	}
	return wrapConnector(c, w.wrappedDriver), nil
}

func wrapConnector(c driver.Connector, d *wrappedDriver) driver.Connector {
	wc := &connector{base: c, d: d}
	if _, ok := c.(interface{ Close() error }); ok {
		return &closingConnector{wc} // sql.DB.Close closes connectors that can be closed
	}
	return wc
}

type connector struct {
	base driver.Connector
	d    *wrappedDriver
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: cn, t: c.d.t}, nil
}

func (c *connector) Driver() driver.Driver { return c.d }

type closingConnector struct{ *connector }

func (c *closingConnector) Close() error { return c.base.(interface{ Close() error }).Close() }
