package alerter

import (
	"errors"
	"fmt"
	"time"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/alerter/rules"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// Config configures the alerter. Zero values take the defaults Validate fills.
type Config struct {
	daemon.Telemetry
	Bus   bus.Config
	Store alertstore.Store // required: alerts, rules, silences, events, partition state
	// Group is the consumer group of mercury.events; metrics and heartbeats use Group
	// with ".metrics" and ".heartbeats". Default "alerter".
	Group string

	// Window is the convergence window of events no rule gives one; default 10 s.
	Window time.Duration
	// StackDepth is how many top frames a default signature takes; default 5.
	StackDepth int

	// Receivers beside the built-in "log"; DefaultReceivers hear alerts no strategy routes
	// (default ["log"]).
	Receivers        []notify.Config
	DefaultReceivers []string
	// LinkBase is the query API's URL, for the links in notifications ("" = relative).
	LinkBase string
	// Publish sends every alert transition to mercury.alerts; default true (set
	// NoPublish to turn it off, e.g. in tests without a broker writer).
	NoPublish bool

	// History answers the metric rules' questions about past minutes (the metric store);
	// nil keeps the points the alerter consumed in memory (rules.MemoryHistory, 8 days).
	History rules.History
	// MetricGrace is how long after a minute ends its point may still come: a series with no
	// point by then is evaluated as a minute without calls. Default 2 min.
	MetricGrace time.Duration
	// Quantiles reads latency quantiles from a point's sketch; nil: p50/p90/p99 conditions
	// never hold and a warning is logged once.
	Quantiles rules.QuantileFunc

	// Self-alerts from heartbeats: a service whose agents send no heartbeat for
	// StoppedAfter (default 1 min) has stopped reporting; an agent whose drop counters grow
	// is dropping; an agent whose spool exceeds SpoolBytes (default 64 MiB) is lagging.
	StoppedAfter time.Duration
	SpoolBytes   int64
	// LagGroups are consumer groups whose lag on their topic is watched (self-alert above
	// MaxLag messages, default 10,000); empty: the collector's and the aggregator's.
	LagGroups map[string]string // group → topic
	MaxLag    int64
	// LagInterval is how often consumer lag is sampled; default 30 s.
	LagInterval time.Duration

	// EventRetention is how long stored events are kept (checked hourly); default 7 days.
	EventRetention time.Duration
	// RulesRefresh is how often rules, strategies and silences are reloaded; default 5 s.
	RulesRefresh time.Duration
	// BatchWait is how long a consumer batch waits for more messages once it has one (the
	// first occurrence of a signature alerts this much later at most); default 10 ms.
	BatchWait time.Duration
	// ClaimLease is how long a notification claimed by an instance is hidden from the
	// others (an instance that dies mid-delivery delays it this long); default 1 min.
	ClaimLease time.Duration
	// Now is the wall clock; default time.Now.
	Now func() time.Time
}

// Validate checks cfg and fills its defaults.
func (c *Config) Validate() error {
	c.Telemetry.Defaults()
	if c.Store == nil {
		return errors.New("alerter: no alert store")
	}
	if len(c.Bus.Brokers) == 0 {
		return errors.New("alerter: no brokers")
	}
	if c.Group == "" {
		c.Group = "alerter"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Window, 10*time.Second)
	def(&c.StoppedAfter, time.Minute)
	def(&c.RulesRefresh, 5*time.Second)
	def(&c.LagInterval, 30*time.Second)
	def(&c.ClaimLease, time.Minute)
	def(&c.MetricGrace, 2*time.Minute)
	def(&c.EventRetention, 7*24*time.Hour)
	def(&c.BatchWait, 10*time.Millisecond)
	if c.StackDepth <= 0 {
		c.StackDepth = 5
	}
	if c.SpoolBytes <= 0 {
		c.SpoolBytes = 64 << 20
	}
	if c.MaxLag <= 0 {
		c.MaxLag = 10_000
	}
	if c.LagGroups == nil {
		c.LagGroups = map[string]string{"collector": bus.TopicSpans, "agg-p1": bus.TopicSpans, "agg-p2": bus.TopicMetrics20s}
	}
	if len(c.DefaultReceivers) == 0 {
		c.DefaultReceivers = []string{"log"}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	for _, r := range c.Receivers {
		if r.Name == "log" || r.Name == publishReceiver {
			return fmt.Errorf("alerter: receiver name %q is built in", r.Name)
		}
	}
	known := map[string]bool{"log": true}
	for _, r := range c.Receivers {
		known[r.Name] = true
	}
	for _, r := range c.DefaultReceivers {
		if !known[r] {
			return fmt.Errorf("alerter: default receiver %q is not defined", r)
		}
	}
	return nil
}
