// Package demo runs three instrumented services — api → order → payment, with SQL in order —
// and drives traffic carrying order and user ids, so a newcomer's pipeline has traces to show.
package demo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"modernc.org/sqlite"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/agenthttp"
	"github.com/mercury-apm/mercury/agent/agentsql"
	"github.com/mercury-apm/mercury/agent/ship"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
)

// idEpoch is where the demo's order ids count from.
var idEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Services names the demo services; each has a spool directory of that name.
var Services = []string{"api", "order", "payment"}

// Config places the demo.
type Config struct {
	SpoolRoot string        // one spool per service below it
	ConfigURL string        // the query service's agent-config endpoint ("" : none)
	Interval  time.Duration // between generated requests (default 250 ms; negative: no traffic)
	// Bus, when it names brokers, ships each service's spool in-process (ship.ForAgent), so the
	// shipper's figures travel in the services' heartbeats. Without it something else ships.
	Bus bus.Config
	// Registry, when set, receives the in-process shippers' metrics, labelled by spool (as
	// the suite labels the shippers it runs itself).
	Registry prometheus.Registerer
	FailRate float64 // share of payments that fail (default 0.05)
	// APIAddr is where the api service listens (default 127.0.0.1:0, a free loopback port);
	// a container sets a reachable one for a gateway in front of it.
	APIAddr string
	Logger  *slog.Logger
}

// Demo is the running services.
type Demo struct {
	cfg       Config
	agents    []*agent.Agent
	servers   []*http.Server
	db        *sql.DB
	client    *http.Client
	apiURL    string
	next      atomic.Int64
	shipStop  context.CancelFunc // ends the in-process shippers
	closeOnce sync.Once
	closeErr  error
	shipWG    sync.WaitGroup
}

// New brings the three services up on loopback ports; Run sends the traffic.
func New(ctx context.Context, cfg Config) (*Demo, error) {
	if cfg.Interval == 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	if cfg.FailRate == 0 {
		cfg.FailRate = 0.05
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Demo{cfg: cfg}
	// Ids grow with the wall clock (10 a second, faster than the default traffic), so a
	// restart does not reuse the order ids of an earlier run and a search finds one trace.
	// They count from 2026 so they stay 9 digits: 11 digits starting with 1 look like a
	// phone number, which the agent's masking hides in exception messages.
	d.next.Store(time.Since(idEpoch).Milliseconds() / 100)
	ag := map[string]*agent.Agent{}
	for _, svc := range Services {
		a, err := agent.New(agent.Config{Service: svc, Domain: "shop", SpoolDir: filepath.Join(cfg.SpoolRoot, svc),
			ConfigURL: cfg.ConfigURL, ConfigPoll: 5 * time.Second, HeartbeatInterval: 5 * time.Second, FlushInterval: 100 * time.Millisecond})
		if err != nil {
			d.Close(ctx)
			return nil, err
		}
		ag[svc] = a
		d.agents = append(d.agents, a)
	}
	if len(cfg.Bus.Brokers) > 0 {
		if err := d.startShippers(ctx); err != nil {
			d.Close(ctx)
			return nil, err
		}
	}
	d.db = agentsql.OpenDB(sqliteConnector{dsn: fmt.Sprintf("file:demo%d?mode=memory&cache=shared", rand.Uint64())}, ag["order"], agentsql.WithPeer("orders-db"))
	d.db.SetMaxOpenConns(1) // one in-memory database shared by every query
	if _, err := d.db.ExecContext(ctx, `CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id TEXT, amount INTEGER, status TEXT)`); err != nil {
		d.Close(ctx)
		return nil, fmt.Errorf("demo: schema: %w", err)
	}
	paymentURL, err := d.listen("payment", "", ag["payment"], d.paymentMux(), nil)
	if err != nil {
		d.Close(ctx)
		return nil, err
	}
	orderClient := &http.Client{Transport: agenthttp.Transport(ag["order"], nil, agenthttp.WithPeerName("payment")), Timeout: 5 * time.Second}
	orderURL, err := d.listen("order", "", ag["order"], d.orderMux(orderClient, paymentURL), nil)
	if err != nil {
		d.Close(ctx)
		return nil, err
	}
	apiClient := &http.Client{Transport: agenthttp.Transport(ag["api"], nil, agenthttp.WithPeerName("order")), Timeout: 5 * time.Second}
	d.apiURL, err = d.listen("api", cfg.APIAddr, ag["api"], d.apiMux(apiClient, orderURL),
		[]agenthttp.Option{agenthttp.WithBusinessKeys(map[string]string{"user_id": "header:X-User-Id"})})
	if err != nil {
		d.Close(ctx)
		return nil, err
	}
	d.client = &http.Client{Timeout: 10 * time.Second}
	return d, nil
}

// Run sends the traffic (unless Interval is negative) until ctx ends, then closes the
// services and flushes their agents.
func (d *Demo) Run(ctx context.Context) error {
	if d.cfg.Interval > 0 {
		d.traffic(ctx)
	} else {
		<-ctx.Done()
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	return d.Close(cctx)
}

// Ready: the services are up once New returned.
func (d *Demo) Ready() error { return nil }

// Routes: the demo serves on its own ports.
func (d *Demo) Routes(*http.ServeMux) {}

// startShippers runs one in-process shipper per service, until Close.
func (d *Demo) startShippers(ctx context.Context) error {
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	d.shipStop = stop
	for _, a := range d.agents {
		s, err := ship.ForAgent(a, ship.Config{Bus: d.cfg.Bus, Logger: d.cfg.Logger})
		if err != nil {
			return err
		}
		if d.cfg.Registry != nil {
			labelled := prometheus.WrapRegistererWith(prometheus.Labels{"spool": a.SpoolDir()}, d.cfg.Registry)
			if err := labelled.Register(s.Collector()); err != nil {
				return err
			}
		}
		d.shipWG.Add(1)
		go func() {
			defer d.shipWG.Done()
			if err := s.Run(sctx); err != nil {
				d.cfg.Logger.Error("demo: shipper", "err", err)
			}
		}()
	}
	return nil
}

// APIURL is the front service's base URL.
func (d *Demo) APIURL() string { return d.apiURL }

// Order places one order through the api service and returns the HTTP status.
func (d *Demo) Order(ctx context.Context, orderID int64, userID string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.apiURL+"/orders/"+strconv.FormatInt(orderID, 10), nil)
	req.Header.Set("X-User-Id", userID)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// NextOrderID is the id the traffic will use next.
func (d *Demo) NextOrderID() int64 { return d.next.Load() }

func (d *Demo) traffic(ctx context.Context) {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			id := d.next.Add(1) - 1
			if _, err := d.Order(ctx, id, "u"+strconv.Itoa(int(id%50))); err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("demo: order failed", "order_id", id, "err", err)
			}
		}
	}
}

// listen serves a service on addr (empty: a free loopback port) and returns its base URL.
func (d *Demo) listen(name, addr string, a *agent.Agent, mux *http.ServeMux, opts []agenthttp.Option) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("demo %s: %w", name, err)
	}
	srv := daemon.NewServer(agenthttp.Middleware(a, mux, opts...), daemon.ServerConfig{})
	d.servers = append(d.servers, srv)
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

// apiMux: POST /orders/{id} → order service.
func (d *Demo) apiMux(c *http.Client, orderURL string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		agent.FromContext(r.Context()).SetBusinessKey("order_id", id)
		status, err := forward(r.Context(), c, orderURL+"/orders/"+id+"/checkout", r.Header.Get("X-User-Id"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(status)
	})
	return mux
}

// orderMux: POST /orders/{id}/checkout → SQL insert, payment, SQL update.
func (d *Demo) orderMux(c *http.Client, paymentURL string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders/{id}/checkout", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := r.PathValue("id")
		agent.FromContext(ctx).SetBusinessKey("order_id", id)
		amount := 100 + rand.IntN(9900)
		if _, err := d.db.ExecContext(ctx, `INSERT OR REPLACE INTO orders (id, user_id, amount, status) VALUES (?, ?, ?, 'new')`, id, r.Header.Get("X-User-Id"), amount); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		status, err := forward(ctx, c, paymentURL+"/payments/"+id, "")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		final := "paid"
		if status != http.StatusOK {
			final = "payment_failed"
		}
		d.db.ExecContext(ctx, `UPDATE orders SET status = ? WHERE id = ?`, final, id)
		w.WriteHeader(status)
	})
	return mux
}

// errDeclined is the payment failure the alerting pipeline will see as an exception event.
var errDeclined = errors.New("card declined by issuer")

// paymentMux: POST /payments/{id}, failing FailRate of the time.
func (d *Demo) paymentMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /payments/{id}", func(w http.ResponseWriter, r *http.Request) {
		span := agent.FromContext(r.Context())
		span.SetBusinessKey("order_id", r.PathValue("id"))
		time.Sleep(time.Duration(2+rand.IntN(8)) * time.Millisecond) // the bank
		if rand.Float64() < d.cfg.FailRate {
			span.RecordError(fmt.Errorf("charge order %s: %w", r.PathValue("id"), errDeclined))
			http.Error(w, "payment declined", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

func forward(ctx context.Context, c *http.Client, url, user string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if user != "" {
		req.Header.Set("X-User-Id", user)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Close stops the services and flushes the agents (Run calls it; call it when not running).
func (d *Demo) Close(ctx context.Context) error {
	d.closeOnce.Do(func() { d.closeErr = d.close(ctx) })
	return d.closeErr
}

func (d *Demo) close(ctx context.Context) error {
	for _, s := range d.servers {
		s.Shutdown(ctx) // handlers finish (and end their spans) before the agents close
	}
	if d.db != nil {
		d.db.Close()
	}
	var errs []error
	for _, a := range d.agents {
		errs = append(errs, a.Close(ctx))
	}
	// Shippers stop last: what the agents flushed on Close is on disk and ships at the next
	// start if not now.
	if d.shipStop != nil {
		d.shipStop()
		d.shipWG.Wait()
	}
	return errors.Join(errs...)
}

// sqliteConnector opens the order service's in-memory SQLite database (one per Demo).
type sqliteConnector struct{ dsn string }

func (c sqliteConnector) Connect(context.Context) (driver.Conn, error) {
	return (&sqlite.Driver{}).Open(c.dsn)
}

func (sqliteConnector) Driver() driver.Driver { return &sqlite.Driver{} }
