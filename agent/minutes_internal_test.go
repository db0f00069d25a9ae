package agent

import (
	"testing"

	"github.com/mercury-apm/mercury/schemas"
)

// Minutes beyond MaxReportedMinutes waiting for one heartbeat go to the overflow count, so a
// host whose clock jumps around cannot grow the agent's memory; minutes already held still
// count in their own key. Negative starts floor to their minute.
func TestMinuteDeltasAreBounded(t *testing.T) {
	var d minuteDeltas
	var tally minuteTally
	for m := int64(0); m < MaxReportedMinutes+10; m++ {
		tally.add(m*60e9 + 1)
	}
	tally.add(5*60e9 + 2) // a minute already held
	d.confirm(&tally)
	stats := map[string]int64{}
	d.put(stats)
	if len(d.byMinute) != MaxReportedMinutes || d.overflow != 10 || stats[schemas.StatMinuteOverflow] != 10 ||
		stats[schemas.StatMinutePrefix+"300"] != 2 || len(stats) != MaxReportedMinutes+1 {
		t.Fatalf("%d minutes, overflow %d, minute 5: %d", len(d.byMinute), d.overflow, stats[schemas.StatMinutePrefix+"300"])
	}
	d.reset()
	tally.add(-1)
	tally.add(-60e9)
	d.confirm(&tally)
	stats = map[string]int64{}
	d.put(stats)
	if stats[schemas.StatMinutePrefix+"-60"] != 2 || len(stats) != 1 {
		t.Fatalf("negative starts: %v", stats)
	}
}
