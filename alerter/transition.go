package alerter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"time"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// state is what a metric rule or self-check says about its key at one moment.
type state struct {
	key       string
	level     string // "" clear, warning, alarm
	asOf      int64  // the moment evaluated (metric: minute unix): older evaluations change nothing
	value     float64
	threshold float64
	summary   string
	startsAt  time.Time
	template  alertstore.Alert // kind, rule, strategy, service...: the alert to fire
	receivers func(level string) []string
}

// transition moves the key's alert to st: fire when clear → level, escalate warning →
// alarm (a second notice, to the alarm's receivers), resolve level → clear with a recovery
// notice to those who heard it. The same state again, or an evaluation older than the
// alert's, changes nothing: a late revision re-evaluates without firing twice.
func (a *Alerter) transition(ctx context.Context, st state) error {
	// A minute without calls has no ratio (NaN), a baseline of zero an infinite one: the
	// summary says which; the stored value is a number JSON can hold.
	st.value = finite(st.value)
	var open alertstore.Alert
	var ok bool
	if err := a.retry(ctx, func() (err error) {
		open, ok, err = a.cfg.Store.OpenAlert(ctx, st.key)
		return err
	}); err != nil {
		return err
	}
	switch {
	case !ok && st.level != "":
		al := st.template
		al.ID = metricAlertID(st.key, st.asOf)
		al.Key, al.Level, al.State = st.key, st.level, alertstore.StateFiring
		al.Value, al.Threshold, al.Summary, al.StartsAt, al.AsOf = st.value, st.threshold, st.summary, st.startsAt.UTC(), st.asOf
		created, err := a.fire(ctx, al, st.receivers(st.level))
		if created {
			a.ruleTransitions.Inc()
		}
		return err
	case !ok:
		return nil
	}
	if st.asOf < open.AsOf {
		return nil
	}
	now := a.cfg.Now()
	var event string
	_, changed, err := a.update(ctx, open.ID, func(al *alertstore.Alert) error {
		if al.State != alertstore.StateFiring || st.asOf < al.AsOf {
			return errUnchanged
		}
		switch {
		case st.level == "":
			event = notify.Resolved
			al.State, al.ResolvedAt = alertstore.StateResolved, now.UTC()
			al.History = append(al.History, alertstore.Change{At: now, What: "resolved", Note: st.summary})
			al.Outbox = append(al.Outbox, a.notices(al, event, st.receivers(al.Level))...)
		case st.level == alertstore.LevelAlarm && al.Level == alertstore.LevelWarning:
			event = notify.Escalated
			al.Level = alertstore.LevelAlarm
			al.History = append(al.History, alertstore.Change{At: now, What: "escalated", Note: st.summary})
			if al.AckedBy == "" { // acknowledged: someone is on it; the board still shows the level
				al.Outbox = append(al.Outbox, a.notices(al, event, st.receivers(alertstore.LevelAlarm))...)
			}
		default:
			return errUnchanged // still firing at its level (an alarm easing to warning stays an alarm)
		}
		al.AsOf = st.asOf
		if event != notify.Resolved {
			// A resolved alert keeps what it fired with, as Alertmanager's do ("dropped 1002
			// records", not "dropped 0"); what resolved it is in its history.
			al.Value, al.Threshold, al.Summary = st.value, st.threshold, st.summary
		}
		return nil
	})
	if changed && err == nil {
		a.ruleTransitions.Inc()
		a.dispatcher.Wake()
	}
	return err
}

func finite(v float64) float64 {
	switch {
	case math.IsNaN(v):
		return 0
	case math.IsInf(v, 1):
		return math.MaxFloat64
	case math.IsInf(v, -1):
		return -math.MaxFloat64
	}
	return v
}

// metricAlertID names the alert a key fires at moment asOf: a replay of the same
// evaluation creates it once.
func metricAlertID(key string, asOf int64) string {
	h := sha256.Sum256([]byte(key + "\x00" + strconv.FormatInt(asOf, 10)))
	return "mt-" + hex.EncodeToString(h[:8])
}

func fmtValue(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
