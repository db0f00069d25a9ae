// Package converge folds repeated events into one alert per signature and convergence
// window, for one input partition. It is a pure function of the partition's events in log
// order (times are the events' own), so the state after an offset is the same on every
// instance that replays the partition: a new owner that loads the state saved with the
// committed offset, or replays from it, makes exactly the decisions the old owner made.
package converge

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Limits on what one window remembers.
const (
	MaxHosts  = 1000 // distinct hosts counted; beyond, HostCount stops growing
	ListHosts = 20   // hosts an alert lists
	Samples   = 5    // event ids and trace ids an alert links to
	// Keep is how long (in event time) a window that folded repeats is remembered after it
	// ends, so the next occurrence can report them.
	Keep = 24 * time.Hour
	// MaxSignatures bounds one partition's state; the windows that ended first go first.
	MaxSignatures = 100_000
)

// Window is one signature's current convergence window.
type Window struct {
	AlertID    string   `json:"alert_id"`
	Start      int64    `json:"start"` // event time of the first occurrence, ns
	End        int64    `json:"end"`
	Suppressed int64    `json:"suppressed"`
	Hosts      []string `json:"hosts"` // sorted, at most MaxHosts
	Events     []string `json:"events,omitempty"`
	TraceIDs   []string `json:"trace_ids,omitempty"`
	// LastOffset is the offset of the last event folded in: it orders writes of the counts.
	LastOffset int64 `json:"last_offset"`
	// Prev: what the window before this one folded (reported with this one's alert).
	PrevSuppressed int64    `json:"prev_suppressed,omitempty"`
	PrevHosts      []string `json:"prev_hosts,omitempty"`
	PrevHostCount  int      `json:"prev_host_count,omitempty"`
	// closed: this process already closed the window's alert. Not saved: a new owner
	// closes it again, which changes nothing.
	closed bool
}

// MarkClosed records that the window's alert was closed, so Ended leaves it out.
func (w *Window) MarkClosed() { w.closed = true }

// HostList is the first ListHosts hosts.
func (w *Window) HostList() []string { return w.Hosts[:min(len(w.Hosts), ListHosts)] }

// Partition is the convergence state of one partition.
type Partition struct {
	// Next is the next offset to apply; offsets below it are already reflected.
	Next int64 `json:"next"`
	// Watermark is the newest event time seen, ns.
	Watermark int64              `json:"watermark"`
	Windows   map[string]*Window `json:"windows"`
}

// New is the empty state of a partition whose first offset to apply is next.
func New(next int64) *Partition { return &Partition{Next: next, Windows: map[string]*Window{}} }

// Occurrence is one event as the window sees it.
type Occurrence struct {
	Offset    int64
	Time      int64 // event time, ns
	Signature string
	Host      string
	EventID   string
	TraceID   string // "" when the event has none
	Window    time.Duration
}

// Decision says what an occurrence means.
type Decision struct {
	Fire bool // first occurrence of a window: alert now
	// Window is the signature's window after the occurrence (owned by the partition: copy
	// what outlives the next Apply).
	Window *Window
	// Closed is the window this occurrence ended (nil when none): its final counts.
	Closed *Window
}

// AlertID names the alert a window opened by the event at (topic, partition, offset)
// raises: the same on every instance that replays the partition.
func AlertID(topic string, partition int, offset int64) string {
	h := sha256.New()
	h.Write([]byte(topic))
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(partition))
	binary.BigEndian.PutUint64(b[8:], uint64(offset))
	h.Write(b[:])
	return "ev-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// Apply folds o into the state. alertID is the id a window opened by o gets.
// An occurrence at or after the current window's end opens a new window and fires; any
// other (a repeat, or one whose time is before the window's start: late, from a host
// whose clock is behind) is suppressed and counted in the current window.
func (p *Partition) Apply(o Occurrence, alertID string) (Decision, error) {
	if o.Offset < p.Next {
		return Decision{}, fmt.Errorf("converge: offset %d already applied (next %d)", o.Offset, p.Next)
	}
	if o.Window <= 0 {
		return Decision{}, fmt.Errorf("converge: window %v: want > 0", o.Window)
	}
	p.Next = o.Offset + 1
	p.Watermark = max(p.Watermark, o.Time)
	w := p.Windows[o.Signature]
	if w != nil && o.Time < w.End {
		w.Suppressed++
		w.Hosts = addHost(w.Hosts, o.Host)
		w.Events = addSample(w.Events, o.EventID)
		w.TraceIDs = addSample(w.TraceIDs, o.TraceID)
		w.LastOffset = o.Offset
		return Decision{Window: w}, nil
	}
	next := &Window{AlertID: alertID, Start: o.Time, End: o.Time + int64(o.Window), Hosts: []string{o.Host},
		Events: addSample(nil, o.EventID), TraceIDs: addSample(nil, o.TraceID), LastOffset: o.Offset}
	if w != nil {
		next.PrevSuppressed, next.PrevHostCount = w.Suppressed, len(w.Hosts)
		next.PrevHosts = slices.Clone(w.HostList())
	}
	p.Windows[o.Signature] = next
	p.prune()
	return Decision{Fire: true, Window: next, Closed: w}, nil
}

func addHost(hosts []string, h string) []string {
	i, found := slices.BinarySearch(hosts, h)
	if found || len(hosts) >= MaxHosts {
		return hosts
	}
	return slices.Insert(hosts, i, h)
}

func addSample(s []string, v string) []string {
	if v == "" || len(s) >= Samples {
		return s
	}
	return append(s, v)
}

// prune forgets windows that have ended and have nothing to report (no repeats), and
// those that ended more than Keep ago; then bounds the count. Event time only, so every
// replay prunes alike.
func (p *Partition) prune() {
	for sig, w := range p.Windows {
		if w.End <= p.Watermark && (w.Suppressed == 0 || w.End+int64(Keep) <= p.Watermark) {
			delete(p.Windows, sig)
		}
	}
	if len(p.Windows) <= MaxSignatures {
		return
	}
	sigs := make([]string, 0, len(p.Windows))
	for sig := range p.Windows {
		sigs = append(sigs, sig)
	}
	sort.Slice(sigs, func(i, j int) bool {
		a, b := p.Windows[sigs[i]], p.Windows[sigs[j]]
		if a.End != b.End {
			return a.End < b.End
		}
		return sigs[i] < sigs[j]
	})
	for _, sig := range sigs[:len(sigs)-MaxSignatures] {
		delete(p.Windows, sig)
	}
}

// Ended lists the windows not marked closed whose end is at or before now (processing
// time, ns), oldest first: the caller closes their alerts and marks them.
func (p *Partition) Ended(now int64) []*Window {
	var out []*Window
	for _, w := range p.Windows {
		if w.End <= now && !w.closed {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].End < out[j].End })
	return out
}

// Marshal encodes the state for the store.
func (p *Partition) Marshal() ([]byte, error) { return json.Marshal(p) }

// Unmarshal decodes a stored state.
func Unmarshal(b []byte) (*Partition, error) {
	p := &Partition{}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("converge: corrupt partition state: %w", err)
	}
	if p.Windows == nil {
		p.Windows = map[string]*Window{}
	}
	return p, nil
}
