// Package alertstore is the contract of the alert store: alerts with their history and
// pending notifications, silences, versioned rules and strategies, the events behind the
// alerts (searchable), and the alerter's per-partition signature state. It knows no backend;
// storage/pebblestore holds the embedded one, storage/storetest the conformance suite.
package alertstore

import (
	"context"
	"errors"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// Sentinel errors; backends wrap them with %w.
var (
	ErrNotFound = errors.New("alertstore: not found")
	// ErrConflict: a versioned write named a version that is not the current one.
	ErrConflict = errors.New("alertstore: version conflict")
	// ErrInvalid: the object failed validation; the caller must fix it.
	ErrInvalid = errors.New("alertstore: invalid")
	ErrClosed  = errors.New("alertstore: closed")
)

// States and levels of an alert.
const (
	StateFiring   = "firing"
	StateResolved = "resolved"

	LevelWarning = "warning"
	LevelAlarm   = "alarm"
)

// Kinds of alert: from an event signature, a metric rule, or Mercury watching itself.
const (
	KindEvent  = "event"
	KindMetric = "metric"
	KindSelf   = "self"
)

// Alert is one firing (or resolved) alert and its history.
type Alert struct {
	ID string `json:"id"`
	// Key names the problem: one signature, one (strategy, rule, series), one self-check.
	// At most one alert per key is firing at a time.
	Key       string  `json:"key"`
	Kind      string  `json:"kind"`
	Rule      string  `json:"rule,omitempty"`
	Strategy  string  `json:"strategy,omitempty"`
	Signature string  `json:"signature,omitempty"`
	Level     string  `json:"level"`
	State     string  `json:"state"`
	Domain    string  `json:"domain,omitempty"`
	Service   string  `json:"service,omitempty"`
	Operation string  `json:"operation,omitempty"`
	Summary   string  `json:"summary"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	// Count is the occurrences folded into this alert: the first one plus the suppressed.
	Count int64 `json:"count"`
	// Suppressed is how many repeats were folded in; PrevSuppressed and PrevHosts report the
	// window before this one (a convergence alert that follows an expired window says so).
	Suppressed     int64             `json:"suppressed"`
	Hosts          []string          `json:"hosts,omitempty"`
	HostCount      int               `json:"host_count,omitempty"` // distinct hosts, even past the listed ones
	PrevSuppressed int64             `json:"prev_suppressed,omitempty"`
	PrevHosts      []string          `json:"prev_hosts,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	// Events and TraceIDs lead from the alert to the stack traces and call chains behind it.
	Events   []string `json:"events,omitempty"`
	TraceIDs []string `json:"trace_ids,omitempty"`

	StartsAt   time.Time `json:"starts_at"`
	EndsAt     time.Time `json:"ends_at,omitempty"` // event alerts: when the window ends
	ResolvedAt time.Time `json:"resolved_at,omitempty"`
	AckedBy    string    `json:"acked_by,omitempty"`
	AckedAt    time.Time `json:"acked_at,omitempty"`
	SilencedBy string    `json:"silenced_by,omitempty"`

	// AsOf orders the writers of an event alert's counts (partition offset, see UpdateAlert
	// callers): a stale writer's counts never replace a newer one's.
	AsOf    int64    `json:"as_of,omitempty"`
	History []Change `json:"history,omitempty"`
	// Outbox holds the notifications not yet delivered; the dispatcher claims and clears them.
	Outbox []Notice `json:"outbox,omitempty"`
}

// Change is one line of an alert's history.
type Change struct {
	At   time.Time `json:"at"`
	What string    `json:"what"` // fired, escalated, suppressed, acked, silenced, notified, resolved
	By   string    `json:"by,omitempty"`
	Note string    `json:"note,omitempty"`
}

// Notice is one notification to deliver: an alert's transition to one receiver.
type Notice struct {
	ID       string    `json:"id"`
	Receiver string    `json:"receiver"`
	Event    string    `json:"event"` // fired, escalated, resolved
	Attempts int       `json:"attempts"`
	NextAt   time.Time `json:"next_at"` // not before (backoff); also the claim's lease
	LastErr  string    `json:"last_err,omitempty"`
}

// MatchLabels are the labels silences match and receivers show, derived from the alert.
func (a *Alert) MatchLabels() map[string]string {
	m := make(map[string]string, len(a.Labels)+8)
	for k, v := range a.Labels {
		m[k] = v
	}
	set := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	set("alertname", a.Rule)
	set("kind", a.Kind)
	set("level", a.Level)
	set("domain", a.Domain)
	set("service", a.Service)
	set("operation", a.Operation)
	set("signature", a.Signature)
	set("strategy", a.Strategy)
	return m
}

// AlertFilter selects alerts; empty fields match everything. Newest first.
type AlertFilter struct {
	State, Level, Service, Kind, Key string
	Limit                            int // default 100, at most 1000
}

// EventQuery selects stored events; empty fields match everything. Newest first.
type EventQuery struct {
	Service, Type, Signature string
	From, To                 time.Time // To zero: now
	Limit                    int       // default 100, at most 1000
}

// StoredEvent is an event with the id and signature the alerter gave it.
type StoredEvent struct {
	ID        string        `json:"id"` // topic, partition and offset: a replay stores it once
	Signature string        `json:"signature"`
	Event     schemas.Event `json:"event"`
}

// Versioned is what every versioned object (rule, strategy) carries.
type Versioned struct {
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
	Deleted   bool      `json:"deleted,omitempty"`
}

// Store is the alert store. Implementations are safe for concurrent use.
type Store interface {
	// CreateAlert stores a new alert; when one with its ID exists it changes nothing and
	// returns false (a replayed decision fires once).
	CreateAlert(ctx context.Context, a Alert) (created bool, err error)
	// UpdateAlert applies fn to the stored alert atomically and stores the result; fn returning
	// an error aborts the update and UpdateAlert returns that error.
	UpdateAlert(ctx context.Context, id string, fn func(*Alert) error) (Alert, error)
	GetAlert(ctx context.Context, id string) (Alert, error)
	// OpenAlert is the firing alert with this key, if any.
	OpenAlert(ctx context.Context, key string) (Alert, bool, error)
	ListAlerts(ctx context.Context, f AlertFilter) ([]Alert, error)
	// PendingAlerts lists alerts whose outbox has a notice due at now.
	PendingAlerts(ctx context.Context, now time.Time, limit int) ([]Alert, error)

	// PutSilence stores s (a new ID when empty) and returns it.
	PutSilence(ctx context.Context, s Silence) (Silence, error)
	GetSilence(ctx context.Context, id string) (Silence, error)
	// Silences lists every silence, expired ones included (the board shows them).
	Silences(ctx context.Context) ([]Silence, error)

	// PutRule stores a new version of r. version must be the current version (0 for a new
	// name); otherwise ErrConflict. The stored rule carries the new version.
	PutRule(ctx context.Context, r Rule, version int64, by string) (Rule, error)
	// GetRule is the current version; version > 0 asks for that one.
	GetRule(ctx context.Context, name string, version int64) (Rule, error)
	Rules(ctx context.Context) ([]Rule, error) // current versions, deleted ones left out
	RuleHistory(ctx context.Context, name string) ([]Rule, error)
	DeleteRule(ctx context.Context, name string, version int64, by string) error
	PutStrategy(ctx context.Context, s Strategy, version int64, by string) (Strategy, error)
	GetStrategy(ctx context.Context, name string, version int64) (Strategy, error)
	Strategies(ctx context.Context) ([]Strategy, error)
	StrategyHistory(ctx context.Context, name string) ([]Strategy, error)
	DeleteStrategy(ctx context.Context, name string, version int64, by string) error

	// PutEvents stores events; an ID stored again (a replay) is still stored once.
	PutEvents(ctx context.Context, evs []StoredEvent) error
	GetEvent(ctx context.Context, id string) (StoredEvent, error)
	SearchEvents(ctx context.Context, q EventQuery) ([]StoredEvent, error)
	// DropEventsBefore deletes events older than cutoff (retention).
	DropEventsBefore(ctx context.Context, cutoff time.Time) error

	// SavePartition stores the alerter's state of one input partition as of offset (the
	// last offset it reflects). A save older than the stored one is ignored, so a revoked
	// instance's late save never rolls the state back.
	SavePartition(ctx context.Context, p PartitionState) error
	// Partition is the stored state; ok false when none.
	Partition(ctx context.Context, group, topic string, partition int) (PartitionState, bool, error)

	Close() error
}

// PartitionState is one consumer's state for one partition, as of an offset.
type PartitionState struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
	State     []byte `json:"state"`
}
