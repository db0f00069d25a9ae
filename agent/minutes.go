package agent

import (
	"strconv"

	"github.com/mercury-apm/mercury/schemas"
)

// Per-minute span counts in heartbeats (schemas.StatMinutePrefix), for `mercury audit`: a
// span counts once its spool block is on disk; the counts of the block being built are held
// back and dropped if its write fails, like the cumulative spans_written. A heartbeat that
// fails to reach the disk keeps its deltas for the next one.

// MaxReportedMinutes bounds the distinct minutes a heartbeat carries, and the memory they take
// while heartbeats cannot be written; spans of further minutes count in
// schemas.StatMinuteOverflow.
const MaxReportedMinutes = 1440

// minuteTally counts spans by start minute. Spans mostly arrive in start order, so the
// current run is a compare and an increment; only a change of minute touches the map.
type minuteTally struct {
	cur, n int64 // the run: n spans in minute cur
	done   map[int64]int64
}

func (t *minuteTally) add(startUnixNano int64) {
	m := startUnixNano / 60e9
	if startUnixNano < 0 && startUnixNano%60e9 != 0 {
		m-- // floor, for the clock of a very confused host
	}
	if m != t.cur {
		t.settle()
		t.cur = m
	}
	t.n++
}

func (t *minuteTally) settle() {
	if t.n == 0 {
		return
	}
	if t.done == nil {
		t.done = map[int64]int64{}
	}
	t.done[t.cur] += t.n
	t.n = 0
}

// drop forgets everything counted (the block they were in was lost).
func (t *minuteTally) drop() {
	t.n = 0
	clear(t.done)
}

// minuteDeltas are confirmed counts waiting for a heartbeat.
type minuteDeltas struct {
	byMinute map[int64]int64
	overflow int64
}

// confirm moves what t counted into d, and empties t.
func (d *minuteDeltas) confirm(t *minuteTally) {
	t.settle()
	if len(t.done) == 0 {
		return
	}
	if d.byMinute == nil {
		d.byMinute = map[int64]int64{}
	}
	for m, n := range t.done {
		if _, ok := d.byMinute[m]; ok || len(d.byMinute) < MaxReportedMinutes {
			d.byMinute[m] += n
		} else {
			d.overflow += n
		}
	}
	clear(t.done)
}

// put adds the deltas to a heartbeat's stats.
func (d *minuteDeltas) put(stats map[string]int64) {
	for m, n := range d.byMinute {
		stats[schemas.StatMinutePrefix+strconv.FormatInt(m*60, 10)] = n
	}
	if d.overflow > 0 {
		stats[schemas.StatMinuteOverflow] = d.overflow
	}
}

// reset forgets the deltas once a heartbeat carrying them is on disk.
func (d *minuteDeltas) reset() {
	clear(d.byMinute)
	d.overflow = 0
}
