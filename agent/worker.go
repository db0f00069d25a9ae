package agent

import (
	"os"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

// writer is the agent's one background goroutine for records: it masks what End queued and
// appends it to the spool, flushes blocks on a timer, and writes heartbeats.
type writer struct {
	a       *Agent
	spans   *spool.Writer
	events  *spool.Writer
	span    schemas.Span // the one being rewritten; its strings point into the batch taken
	taken   uint64       // spans taken off the queue so far
	waiting []flushRequest
	lastErr time.Time
	// Per-minute span counts for heartbeats (minutes.go): those of the pending spool block,
	// confirmed when the block is on disk, dropped when its write fails.
	pendingMinutes minuteTally
	minutes        minuteDeltas
}

func (a *Agent) writeLoop() {
	defer a.wg.Done()
	w := &writer{a: a, spans: a.spool.Writer(spool.StreamSpans), events: a.spool.Writer(spool.StreamEvents)}
	flush := time.NewTicker(a.cfg.FlushInterval)
	defer flush.Stop()
	beat := time.NewTicker(a.cfg.HeartbeatInterval)
	defer beat.Stop()
	w.heartbeat()
	for {
		select {
		case <-a.spans.wake:
			w.drain()
		case f := <-a.flushes:
			w.waiting = append(w.waiting, f)
			w.drain()
		case ev := <-a.events:
			w.writeEvent(&ev)
		case <-flush.C:
			a.clock.Store(newClockBase(a.clock.Load()))
			w.drain()
			w.flush()
		case <-beat.C:
			w.heartbeat()
		case <-a.stop:
			w.drain()
			for {
				select {
				case ev := <-a.events:
					w.writeEvent(&ev)
				default:
					w.flush()
					w.heartbeat()
					return
				}
			}
		}
	}
}

// drain writes everything queued, then answers the flush requests it has caught up with.
func (w *writer) drain() {
	for {
		batch, n := w.a.spans.take()
		if n == 0 {
			break
		}
		w.writeSpans(batch, n)
		w.taken += uint64(n)
	}
	kept := w.waiting[:0]
	for _, f := range w.waiting {
		if f.upTo <= w.taken {
			w.flush()
			close(f.done)
		} else {
			kept = append(kept, f)
		}
	}
	w.waiting = kept
}

// writeSpans masks n encoded spans and appends them to the spool with the agent's identity.
func (w *writer) writeSpans(b []byte, n int) {
	a, s := w.a, &w.span
	committed := 0
	defer func() { a.written.Add(int64(committed)) }() // once per batch: fewer locked adds
	for i := 0; i < n; i++ {
		rest, err := decodeQueued(b, s)
		if err != nil { // End encoded these bytes: only a bug gets here
			a.dropInternal.Add(int64(n - i))
			a.cfg.Logger.Printf("mercury agent: dropping %d queued spans: %v", n-i, err)
			break
		}
		b = rest
		s.Domain, s.Service, s.Host, s.AgentVersion = a.cfg.Domain, a.cfg.Service, a.cfg.Host, Version
		a.mask.span(s)
		committed++
		w.pendingMinutes.add(s.StartUnixNano)
		lost, err := w.spans.Commit(schemas.AppendSpan(w.spans.Pending(), s))
		w.spansOut(lost, err)
	}
	s.Reset() // nothing may keep pointing into the batch once the queue refills it
}

func (w *writer) writeEvent(ev *schemas.Event) {
	a := w.a
	ev.Domain, ev.Service, ev.Host, ev.AgentVersion = a.cfg.Domain, a.cfg.Service, a.cfg.Host, Version
	a.mask.event(ev)
	body, err := schemas.AppendBinary(w.events.Pending(), ev)
	if err != nil {
		return
	}
	a.eventsOut.Add(1)
	lost, err := w.events.Commit(body)
	w.report(&a.eventsOut, lost, err)
}

func (w *writer) flush() {
	w.spansOut(w.spans.Flush())
	lost, err := w.events.Flush()
	w.report(&w.a.eventsOut, lost, err)
}

// spansOut accounts for a Commit or Flush of the spans stream: a block lost takes its spans
// off the counts, a block written confirms its per-minute counts.
func (w *writer) spansOut(lost int, err error) {
	w.report(&w.a.written, lost, err)
	switch {
	case lost > 0:
		w.pendingMinutes.drop()
	case w.spans.Records() == 0:
		w.minutes.confirm(&w.pendingMinutes)
	}
}

// report counts records a failed block write lost; they were counted as written when
// committed, so the counter is corrected (blocks hold one stream each).
func (w *writer) report(written *atomic.Int64, lost int, err error) {
	if lost > 0 {
		w.a.dropDisk.Add(int64(lost))
		written.Add(-int64(lost))
	}
	if err != nil && time.Since(w.lastErr) > time.Minute {
		w.lastErr = time.Now()
		w.a.cfg.Logger.Printf("mercury agent: spool write failed, dropping records: %v", err)
	}
}

// heartbeat writes the agent's stats, with the per-minute counts confirmed since the last
// heartbeat that reached the disk.
func (w *writer) heartbeat() {
	a := w.a
	st := a.Stats()
	hb := schemas.Heartbeat{
		TimeUnixNano: time.Now().UnixNano(), Domain: a.cfg.Domain, Service: a.cfg.Service, Host: a.cfg.Host,
		PID: int32(os.Getpid()), AgentVersion: Version, ConfigVersion: st.ConfigVersion,
		StartedUnixNano: a.started.UnixNano(),
		Stats: map[string]int64{
			"queued": st.Queued, "spans_written": st.SpansWritten, "events_written": st.EventsWritten,
			"spool_bytes": st.SpoolBytes, "spool_segments": st.SpoolSegments, "spool_deleted_segments": st.SpoolDeleted,
		},
	}
	w.minutes.put(hb.Stats)
	for reason, n := range st.Dropped {
		hb.Stats["dropped_"+reason] = n
	}
	if rs := a.reporters.Load(); rs != nil {
		for _, fn := range *rs {
			for k, v := range fn() {
				hb.Stats[k] = v
			}
		}
	}
	hw := a.spool.Writer(spool.StreamHeartbeats)
	body, err := schemas.AppendBinary(hw.Pending(), &hb)
	if err != nil {
		return
	}
	if lost, err := hw.Commit(body); err == nil && lost == 0 {
		if lost, err := hw.Flush(); err == nil && lost == 0 {
			a.beats.Add(1)
			w.minutes.reset()
		}
	}
}
