package reconcile

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/mercury-apm/mercury/internal/metric"
)

// WriteTable prints the report: one line per service and minute with the count at each
// stage, then the rows that lost spans with the stage where they were lost.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "audit %s to %s (UTC minutes; aggregated and weighted in spans, 1/sample rate)\n",
		r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "service\tminute\treported\tshipped\tstored\tweighted\taggregated\t")
	for _, row := range r.Rows {
		reported := "-"
		if row.Reported != nil {
			reported = strconv.FormatInt(*row.Reported, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t\n", row.Service, row.Minute.Format("2006-01-02 15:04"), reported,
			row.Shipped, row.Stored, spans(row.ShippedUnits), spans(row.AggregatedUnits))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.UndecodableSpans > 0 || r.UndecodableHeartbeats > 0 {
		fmt.Fprintf(w, "undecodable records: %d spans, %d heartbeats (not counted)\n", r.UndecodableSpans, r.UndecodableHeartbeats)
	}
	for _, warning := range r.Warnings {
		fmt.Fprintln(w, "warning:", warning)
	}
	if r.Missing == 0 {
		_, err := fmt.Fprintf(w, "nothing missing: %d service-minutes\n", len(r.Rows))
		return err
	}
	fmt.Fprintf(w, "missing: %d of %d service-minutes lost spans\n", r.Missing, len(r.Rows))
	for _, row := range r.Rows {
		if len(row.Losses) == 0 {
			continue
		}
		fmt.Fprintf(w, "  %s %s lost at %s:", row.Service, row.Minute.Format("2006-01-02 15:04"), row.LostAt())
		for _, g := range row.Losses {
			fmt.Fprintf(w, " %s -%s", g.Stage, strconv.FormatFloat(g.Spans, 'f', -1, 64))
		}
		fmt.Fprintln(w)
	}
	return nil
}

// spans formats weighted units as spans, exactly (a unit is 1/1024 span).
func spans(units int64) string {
	return strconv.FormatFloat(float64(units)/metric.Units, 'f', -1, 64)
}
