package alerter

import (
	"context"
	"sort"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/alerter/notify"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
)

// publisher is the receiver that writes alert transitions to mercury.alerts (keyed by the
// alert's key, so one problem's transitions stay in order in one partition).
type publisher struct {
	w *kafka.Writer
}

func newPublisher(cfg bus.Config) (*publisher, error) {
	w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicAlerts})
	if err != nil {
		return nil, err
	}
	return &publisher{w: w}, nil
}

// Record is the mercury.v1.Alert record of a transition.
func Record(a *alertstore.Alert) schemas.Alert {
	rec := schemas.Alert{ID: a.ID, Rule: a.Rule, Signature: a.Signature, Level: a.Level, State: a.State,
		Domain: a.Domain, Service: a.Service, Operation: a.Operation, Summary: a.Summary, Value: a.Value,
		Threshold: a.Threshold, Count: a.Count, StartsUnixNano: a.StartsAt.UnixNano()}
	if !a.ResolvedAt.IsZero() {
		rec.EndsUnixNano = a.ResolvedAt.UnixNano()
	} else if !a.EndsAt.IsZero() {
		rec.EndsUnixNano = a.EndsAt.UnixNano()
	}
	for k, v := range a.MatchLabels() {
		rec.Labels = append(rec.Labels, schemas.KV{Key: k, Value: v})
	}
	sort.Slice(rec.Labels, func(i, j int) bool { return rec.Labels[i].Key < rec.Labels[j].Key })
	return rec
}

func (p *publisher) Notify(ctx context.Context, n notify.Notification) error {
	rec := Record(&n.Alert)
	if n.Event == notify.Resolved {
		rec.State = alertstore.StateResolved
	}
	v, err := schemas.Marshal(&rec)
	if err != nil {
		return retry.Permanent(err)
	}
	return p.w.WriteMessages(ctx, kafka.Message{Key: []byte(n.Alert.Key), Value: v,
		Headers: []kafka.Header{{Key: "mercury.alert.event", Value: []byte(n.Event)}}})
}

func (p *publisher) Close() error { return bus.CloseWriter(p.w) }
