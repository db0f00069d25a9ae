package reconcile

import (
	"strings"
	"testing"
	"time"
)

func TestTrimmedWarning(t *testing.T) {
	from := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		first, start int64
		at           time.Time
		warn         bool
	}{
		{first: 0, start: 0, at: from.Add(time.Hour)},                 // nothing ever removed
		{first: 50, start: 80, at: from.Add(time.Minute)},             // the window starts past the removed records
		{first: 50, start: 50, at: from.Add(-time.Minute)},            // removed records are older than the window
		{first: 50, start: 50, at: from.Add(time.Minute), warn: true}, // removed records may be in the window
	} {
		w := trimmed("mercury.spans", 3, c.first, c.start, c.at, from)
		if (w != "") != c.warn || (c.warn && !strings.Contains(w, "mercury.spans partition 3: retention removed")) {
			t.Errorf("%+v: %q", c, w)
		}
	}
}
