package reliability

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// report is what the drill injected and checked; it is logged and written as Markdown to
// $MERCURY_RELIABILITY_REPORT, or else to RELIABILITY.md in $MERCURY_ARTIFACTS, when set.
type report struct {
	seed, spans int
	started     time.Time
	faults      []fault
	kills       int
	traffic     time.Duration // sending, with the faults
	drained     time.Duration // then until every consumer caught up

	ended, records, distinct, rows, docs, points, tooLate int
	alerts, metricAlerts                                  int
	services                                              []serviceFigures
	otherAlerts                                           []string
	checks                                                []string
}

type serviceFigures struct {
	name                        string
	ended                       int
	missingSpans, missingEvents int
	dropped                     map[string]int64
	slowest                     time.Duration
}

// verdict records a check and fails the test when it does not hold.
func (r *report) verdict(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	mark := "PASS"
	if !ok {
		mark = "FAIL"
		t.Error(line)
	}
	r.checks = append(r.checks, fmt.Sprintf("| %s | %s |", mark, line))
}

func (r *report) markdown() string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "## Run of %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Seed %d, %d spans asked for, %s/%s, %d CPUs (%s). Traffic with faults %v, drain %v.\n\n",
		r.seed, r.spans, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), host, r.traffic.Round(100*time.Millisecond), r.drained.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "### Injected (%d faults, %d processes SIGKILLed)\n\n```\n", len(r.faults), r.kills)
	for _, f := range r.faults {
		fmt.Fprintln(&b, f)
	}
	b.WriteString("```\n\n### Figures\n\n| service | spans sent | spans missing from Kafka | events missing | agent-counted drops | slowest request (2 spans) |\n|---|---|---|---|---|---|\n")
	for _, s := range r.services {
		var drops []string
		for _, k := range slices.Sorted(maps.Keys(s.dropped)) {
			if s.dropped[k] > 0 {
				drops = append(drops, fmt.Sprintf("%s %d", k, s.dropped[k]))
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %v |\n", s.name, s.ended, s.missingSpans, s.missingEvents, strings.Join(drops, ", "), s.slowest.Round(time.Microsecond))
	}
	fmt.Fprintf(&b, "\n%d spans sent; mercury.spans holds %d records of %d distinct spans (%d resent by a shipper after a kill); "+
		"the trace rows hold %d spans, the index %d documents; %d minute points compared, %d spans too late; %d exception bursts alerted; the metric rule fired on %d series.\n",
		r.ended, r.records, r.distinct, r.records-r.distinct, r.rows, r.docs, r.points, r.tooLate, r.alerts, r.metricAlerts)
	if len(r.otherAlerts) > 0 {
		fmt.Fprintf(&b, "\nOther alerts raised during the run (Mercury watching itself):\n\n")
		for _, a := range r.otherAlerts {
			fmt.Fprintf(&b, "- %s\n", a)
		}
	}
	b.WriteString("\n### Checks\n\n| | |\n|---|---|\n")
	for _, c := range r.checks {
		b.WriteString(c + "\n")
	}
	return b.String()
}

func (r *report) write(t *testing.T) {
	md := r.markdown()
	t.Log("\n" + md)
	path := os.Getenv("MERCURY_RELIABILITY_REPORT")
	if dir := os.Getenv("MERCURY_ARTIFACTS"); path == "" && dir != "" {
		path = filepath.Join(dir, "RELIABILITY.md")
	}
	if path != "" {
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			t.Error(err)
		}
	}
}
