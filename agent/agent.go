// Package agent traces a Go service for Mercury: spans with W3C propagation, business keys,
// masking, and exception events, written as Avro to a local spool without ever blocking or
// failing the host. Link it, call Start once, and instrument with the agenthttp and agentsql
// packages or StartSpan.
//
// The hot path (StartSpan, setters, End) allocates once per span and returns at once: End
// encodes the span into a bounded queue, and one background goroutine masks it and appends it
// to the spool. When the queue or the disk is full, records are dropped and counted by reason.
package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

// Version is the agent's version, reported in every span and heartbeat.
const Version = "0.1.0"

// Logger receives the agent's rare diagnostics (never per-span). log.Printf fits.
type Logger interface {
	Printf(format string, args ...any)
}

// Config configures the agent. The zero value works: it traces everything into ./mercury-spool.
type Config struct {
	Service string // defaults to the executable's name
	Domain  string // business domain, e.g. "shop"; defaults to Service
	Host    string // defaults to os.Hostname

	SpoolDir      string // default ./mercury-spool
	SpoolMaxBytes int64  // disk budget (default 1 GiB)
	// QueueSize is how many spans wait in memory for the writer (default 8192), encoded,
	// 512 bytes each on average at most. Its two buffers take 2 × (512 × QueueSize + min(4 MiB,
	// 512 × QueueSize)) bytes, 16 MiB by default, resident as spans reach them.
	QueueSize int

	// SampleRate is the fraction of root traces recorded: 0 means 1 (everything). Downstream
	// services follow the root's decision, whatever their own rate.
	SampleRate float64
	// OverrideDomainSampling makes this service take its own sampling decision for traces that
	// enter its domain from another one. Chains that cross the boundary may then be incomplete.
	OverrideDomainSampling bool

	Mask MaskConfig

	// Dynamic configuration: polled from ConfigURL (the query service's agent-config endpoint)
	// or read from ConfigFile, every ConfigPoll (default 30 s).
	ConfigURL  string
	ConfigFile string
	ConfigPoll time.Duration

	HeartbeatInterval time.Duration // default 10 s
	// FlushInterval is how often pending blocks reach the disk, and how long fewer than 64
	// queued spans wait for the writer (default 200 ms).
	FlushInterval time.Duration

	Logger Logger

	// SpoolOpenFile creates the spool's segment files (default spool.CreateSegmentFile). Fault
	// drills wrap it to stall or fail the disk under a running agent.
	SpoolOpenFile func(path string) (spool.File, error)
}

func (c *Config) defaults() {
	if c.Service == "" {
		c.Service = "unknown"
		if exe, err := os.Executable(); err == nil {
			c.Service = baseName(exe)
		}
	}
	if c.Domain == "" {
		c.Domain = c.Service
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.SpoolDir == "" {
		c.SpoolDir = "mercury-spool"
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 8192
	}
	if c.SampleRate <= 0 || c.SampleRate > 1 {
		c.SampleRate = 1
	}
	if c.ConfigPoll <= 0 {
		c.ConfigPoll = 30 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 10 * time.Second
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = nopLogger{}
	}
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' || p[i] == '\\' {
			return p[i+1:]
		}
	}
	return p
}

// Drop reasons.
const (
	DropQueueFull = "queue_full" // the writer fell behind (slow or stalled disk)
	DropDisk      = "disk_error" // the spool write failed (disk full, I/O error)
	DropClosed    = "closed"     // recorded after Close
	DropInternal  = "internal"   // a bug in the agent: queued bytes did not decode (logged)
)

// Agent records spans and events. Its methods are safe for concurrent use.
type Agent struct {
	cfg     Config
	origin  string // cfg.Domain as it travels in tracestate (originName)
	spool   *spool.Spool
	mask    *masker
	spans   *spanQueue
	records sync.Pool // *spanRecord: Start takes one, End and Discard give it back
	events  chan schemas.Event
	flushes chan flushRequest
	runtime atomic.Pointer[runtimeConfig]
	clock   atomic.Pointer[clockBase]
	started time.Time

	reporters    atomic.Pointer[[]func() map[string]int64] // extra heartbeat figures (ReportStats)
	closed       atomic.Bool
	stop         chan struct{}
	wg           sync.WaitGroup
	closeOnce    sync.Once
	dropQueue    atomic.Int64
	dropDisk     atomic.Int64
	dropClosed   atomic.Int64
	dropInternal atomic.Int64
	written      atomic.Int64 // spans
	eventsOut    atomic.Int64
	beats        atomic.Int64
}

// Start opens the spool and starts the background writer (and the config poller when a config
// source is set). It also makes the agent the default one for the package-level functions.
func Start(cfg Config) (*Agent, error) {
	a, err := New(cfg)
	if err != nil {
		return nil, err
	}
	defaultAgent.Store(a)
	return a, nil
}

// New is Start without touching the package default: for tests and hosts running several.
func New(cfg Config) (*Agent, error) {
	cfg.defaults()
	m, err := newMasker(cfg.Mask)
	if err != nil {
		return nil, err
	}
	sp, err := spool.Open(spool.Config{Dir: cfg.SpoolDir, MaxBytes: cfg.SpoolMaxBytes, OpenFile: cfg.SpoolOpenFile})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := newAgent(cfg, sp, m)
	a.wg.Add(1)
	go a.writeLoop()
	if cfg.ConfigURL != "" || cfg.ConfigFile != "" {
		a.wg.Add(1)
		go a.pollConfig()
	}
	return a, nil
}

// newAgent builds an agent with defaulted cfg, and starts no goroutine.
func newAgent(cfg Config, sp *spool.Spool, m *masker) *Agent {
	a := &Agent{
		cfg: cfg, origin: originName(cfg.Domain), spool: sp, mask: m, started: time.Now(), stop: make(chan struct{}),
		spans:  newSpanQueue(cfg.QueueSize),
		events: make(chan schemas.Event, max(cfg.QueueSize/8, 64)), flushes: make(chan flushRequest),
	}
	a.records.New = func() any { return newSpanRecord() }
	a.clock.Store(newClockBase(nil))
	a.runtime.Store(&runtimeConfig{sampleRate: cfg.SampleRate, overrideDomain: cfg.OverrideDomainSampling, version: "local"})
	return a
}

// Close stops recording, drains the queue to disk and closes the spool, giving up when ctx
// ends. Spans ended afterwards are dropped and counted.
func (a *Agent) Close(ctx context.Context) error {
	var err error
	a.closeOnce.Do(func() {
		a.closed.Store(true)
		a.spans.shutdown() // before the writer's last drain: every span is written or counted
		close(a.stop)
		done := make(chan struct{})
		go func() { a.wg.Wait(); close(done) }()
		select {
		case <-done:
			for len(a.events) > 0 { // emitted while the writer was leaving
				<-a.events
				a.dropClosed.Add(1)
			}
			err = a.spool.Close()
		case <-ctx.Done():
			err = fmt.Errorf("agent: close: %w", ctx.Err())
		}
		defaultAgent.CompareAndSwap(a, nil)
	})
	return err
}

// ReportStats adds figures from another component of the process (an in-process shipper,
// say) to every heartbeat from now on. fn must be cheap and safe to call from any goroutine.
func (a *Agent) ReportStats(fn func() map[string]int64) {
	for {
		old := a.reporters.Load()
		var next []func() map[string]int64
		if old != nil {
			next = append(next, *old...)
		}
		next = append(next, fn)
		if a.reporters.CompareAndSwap(old, &next) {
			return
		}
	}
}

// Service is the service the agent reports for.
func (a *Agent) Service() string { return a.cfg.Service }

// SpoolDir is where the agent writes; the shipper reads it.
func (a *Agent) SpoolDir() string { return a.cfg.SpoolDir }

// Stats is a snapshot of what the agent did.
type Stats struct {
	Queued            int64 // spans waiting for the writer
	SpansWritten      int64
	EventsWritten     int64
	HeartbeatsWritten int64
	Dropped           map[string]int64 // by reason: queue_full, disk_error, closed
	SpoolBytes        int64
	SpoolSegments     int64
	SpoolDeleted      int64 // segments deleted to keep the disk budget
	ConfigVersion     string
}

// Stats returns a snapshot.
func (a *Agent) Stats() Stats {
	sp := a.spool.Stats()
	return Stats{
		Queued: int64(a.spans.len()), SpansWritten: a.written.Load(), EventsWritten: a.eventsOut.Load(),
		HeartbeatsWritten: a.beats.Load(),
		Dropped: map[string]int64{
			DropQueueFull: a.dropQueue.Load(), DropDisk: a.dropDisk.Load(), DropClosed: a.dropClosed.Load(),
			DropInternal: a.dropInternal.Load(),
		},
		SpoolBytes: sp.Bytes, SpoolSegments: sp.Segments, SpoolDeleted: sp.DeletedSegments,
		ConfigVersion: a.runtime.Load().version,
	}
}

// Flush waits until everything queued before the call is on disk (page cache), or ctx ends.
func (a *Agent) Flush(ctx context.Context) error {
	if a.closed.Load() {
		return errors.New("agent: closed")
	}
	req := flushRequest{upTo: a.spans.pushedSoFar(), done: make(chan struct{})}
	select {
	case a.flushes <- req:
	case <-a.stop:
		return errors.New("agent: closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req.done:
		return nil
	case <-a.stop:
		return errors.New("agent: closed before the flush")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flushRequest asks the writer to flush once it has written the first upTo queued spans.
type flushRequest struct {
	upTo uint64
	done chan struct{}
}

var defaultAgent atomic.Pointer[Agent]

// Default returns the agent Start made, or nil.
func Default() *Agent { return defaultAgent.Load() }
