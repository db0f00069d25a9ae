// Package broker runs Mercury's embedded Kafka-protocol broker: kfake from franz-go with its
// DataDir persistence, one node, listening on one address. It is the bus of `mercury up`,
// `mercury broker` and the tests, spoken to by the same kafka-go code as a real cluster.
//
// It is a single-machine broker: one node, no replication, no quotas worth the name. Real
// Kafka is the scale-out path; every Mercury daemon takes --brokers.
package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mercury-apm/mercury/bus"
)

// Config configures the embedded broker.
type Config struct {
	// DataDir keeps topics, records and committed group offsets across restarts. Empty:
	// in memory, gone on Close.
	DataDir string
	// Addr is host:port to listen on; default 127.0.0.1:0 (a free port, see Addr()).
	Addr string
	// Partitions overrides bus.DefaultPartitions per topic for topics created at first start.
	Partitions map[string]int
	// SyncWrites fsyncs every produced batch. Without it a clean Close persists everything,
	// but a kill -9 of the broker process may lose the page-cache tail (like Kafka's default).
	SyncWrites bool
	Logger     *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	c    *kfake.Cluster
	addr string
	stop context.CancelFunc // the group janitor
	done chan struct{}
}

// New starts the broker, creates the Mercury topics if they do not exist yet (a restart on
// the same DataDir finds them, with their records and group offsets) and returns once it
// accepts connections. ctx bounds the start only; the broker runs until Close (or until
// Run's context ends).
func New(ctx context.Context, cfg Config) (*Broker, error) {
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("broker: data dir: %w", err)
		}
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("mercury"),
		// kfake always asks its listen function for 127.0.0.1:<port>; we listen on the
		// configured address instead (it is also what the broker advertises in metadata).
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }),
		kfake.WithLogger(slogLogger{log}),
		kfake.DefaultNumPartitions(3),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: start on %s: %w", addr, err)
	}
	b := &Broker{c: c, addr: c.ListenAddrs()[0], done: make(chan struct{})}
	j := newJanitor(c, b.addr, log)
	jctx, stop := context.WithCancel(context.Background())
	b.stop = stop
	go func() { defer close(b.done); j.run(jctx) }()
	if err := bus.EnsureTopics(ctx, bus.Config{Brokers: []string{b.addr}, ClientID: "mercury-broker"}, cfg.Partitions); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Run serves until ctx ends, then closes the broker (persisting its state).
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	return b.Close()
}

// Ready: a running broker is ready.
func (b *Broker) Ready() error { return nil }

// Routes: the broker has no HTTP endpoints.
func (b *Broker) Routes(*http.ServeMux) {}

// Addr is the host:port clients connect to.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker and, with a DataDir, persists its state. Connected clients see
// their connections drop and reconnect when a broker starts again on the same address.
func (b *Broker) Close() error {
	b.stop()
	<-b.done
	b.c.Close()
	return nil
}

// slogLogger routes kfake's warnings and errors to slog; its info/debug output is per request.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	switch level {
	case kfake.LogLevelError:
		s.l.Error("kfake: " + msg)
	case kfake.LogLevelWarn:
		s.l.Warn("kfake: " + msg)
	}
}
