package alerter

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/storage/alertstore"
)

// killable passes every call to a shared store until killed; then every call fails as if
// the process holding it were gone (nothing more of it reaches the store).
type killable struct {
	s    alertstore.Store
	dead atomic.Bool
}

func (k *killable) kill() { k.dead.Store(true) }

func (k *killable) CreateAlert(ctx context.Context, a alertstore.Alert) (created bool, err error) {
	if k.dead.Load() {
		return false, alertstore.ErrClosed
	}
	return k.s.CreateAlert(ctx, a)
}

func (k *killable) UpdateAlert(ctx context.Context, id string, fn func(*alertstore.Alert) error) (alertstore.Alert, error) {
	if k.dead.Load() {
		return alertstore.Alert{}, alertstore.ErrClosed
	}
	return k.s.UpdateAlert(ctx, id, fn)
}

func (k *killable) GetAlert(ctx context.Context, id string) (alertstore.Alert, error) {
	if k.dead.Load() {
		return alertstore.Alert{}, alertstore.ErrClosed
	}
	return k.s.GetAlert(ctx, id)
}

func (k *killable) OpenAlert(ctx context.Context, key string) (alertstore.Alert, bool, error) {
	if k.dead.Load() {
		return alertstore.Alert{}, false, alertstore.ErrClosed
	}
	return k.s.OpenAlert(ctx, key)
}

func (k *killable) ListAlerts(ctx context.Context, f alertstore.AlertFilter) ([]alertstore.Alert, error) {
	if k.dead.Load() {
		return nil, alertstore.ErrClosed
	}
	return k.s.ListAlerts(ctx, f)
}

func (k *killable) PendingAlerts(ctx context.Context, now time.Time, limit int) ([]alertstore.Alert, error) {
	if k.dead.Load() {
		return nil, alertstore.ErrClosed
	}
	return k.s.PendingAlerts(ctx, now, limit)
}

func (k *killable) PutSilence(ctx context.Context, s alertstore.Silence) (alertstore.Silence, error) {
	if k.dead.Load() {
		return alertstore.Silence{}, alertstore.ErrClosed
	}
	return k.s.PutSilence(ctx, s)
}

func (k *killable) GetSilence(ctx context.Context, id string) (alertstore.Silence, error) {
	if k.dead.Load() {
		return alertstore.Silence{}, alertstore.ErrClosed
	}
	return k.s.GetSilence(ctx, id)
}

func (k *killable) Silences(ctx context.Context) ([]alertstore.Silence, error) {
	if k.dead.Load() {
		return nil, alertstore.ErrClosed
	}
	return k.s.Silences(ctx)
}

func (k *killable) PutRule(ctx context.Context, r alertstore.Rule, version int64, by string) (alertstore.Rule, error) {
	if k.dead.Load() {
		return alertstore.Rule{}, alertstore.ErrClosed
	}
	return k.s.PutRule(ctx, r, version, by)
}

func (k *killable) GetRule(ctx context.Context, name string, version int64) (alertstore.Rule, error) {
	if k.dead.Load() {
		return alertstore.Rule{}, alertstore.ErrClosed
	}
	return k.s.GetRule(ctx, name, version)
}

func (k *killable) Rules(ctx context.Context) ([]alertstore.Rule, error) {
	if k.dead.Load() {
		return nil, alertstore.ErrClosed
	}
	return k.s.Rules(ctx)
}

func (k *killable) RuleHistory(ctx context.Context, name string) ([]alertstore.Rule, error) {
	if k.dead.Load() {
		return nil, alertstore.ErrClosed
	}
	return k.s.RuleHistory(ctx, name)
}

func (k *killable) DeleteRule(ctx context.Context, name string, version int64, by string) error {
	if k.dead.Load() {
		return alertstore.ErrClosed
	}
	return k.s.DeleteRule(ctx, name, version, by)
}

func (k *killable) PutStrategy(ctx context.Context, s alertstore.Strategy, version int64, by string) (alertstore.Strategy, error) {
	if k.dead.Load() {
		return alertstore.Strategy{}, alertstore.ErrClosed
	}
	return k.s.PutStrategy(ctx, s, version, by)
}

func (k *killable) GetStrategy(ctx context.Context, name string, version int64) (alertstore.Strategy, error) {
	if k.dead.Load() {
		return alertstore.Strategy{}, alertstore.ErrClosed
	}
	return k.s.GetStrategy(ctx, name, version)
}

func (k *killable) Strategies(ctx context.Context) ([]alertstore.Strategy, error) {
	if k.dead.Load() {
		return nil, alertstore.ErrClosed
	}
	return k.s.Strategies(ctx)
}

func (k *killable) StrategyHistory(ctx context.Context, name string) ([]alertstore.Strategy, error) {
	if k.dead.Load() {
		return nil, alertstore.ErrClosed
	}
	return k.s.StrategyHistory(ctx, name)
}

func (k *killable) DeleteStrategy(ctx context.Context, name string, version int64, by string) error {
	if k.dead.Load() {
		return alertstore.ErrClosed
	}
	return k.s.DeleteStrategy(ctx, name, version, by)
}

func (k *killable) PutEvents(ctx context.Context, evs []alertstore.StoredEvent) error {
	if k.dead.Load() {
		return alertstore.ErrClosed
	}
	return k.s.PutEvents(ctx, evs)
}

func (k *killable) GetEvent(ctx context.Context, id string) (alertstore.StoredEvent, error) {
	if k.dead.Load() {
		return alertstore.StoredEvent{}, alertstore.ErrClosed
	}
	return k.s.GetEvent(ctx, id)
}

func (k *killable) SearchEvents(ctx context.Context, q alertstore.EventQuery) ([]alertstore.StoredEvent, error) {
	if k.dead.Load() {
		return nil, alertstore.ErrClosed
	}
	return k.s.SearchEvents(ctx, q)
}

func (k *killable) DropEventsBefore(ctx context.Context, cutoff time.Time) error {
	if k.dead.Load() {
		return alertstore.ErrClosed
	}
	return k.s.DropEventsBefore(ctx, cutoff)
}

func (k *killable) SavePartition(ctx context.Context, p alertstore.PartitionState) error {
	if k.dead.Load() {
		return alertstore.ErrClosed
	}
	return k.s.SavePartition(ctx, p)
}

func (k *killable) Partition(ctx context.Context, group string, topic string, partition int) (alertstore.PartitionState, bool, error) {
	if k.dead.Load() {
		return alertstore.PartitionState{}, false, alertstore.ErrClosed
	}
	return k.s.Partition(ctx, group, topic, partition)
}

func (k *killable) Close() error { return nil } // the shared store outlives the instance
var _ alertstore.Store = (*killable)(nil)
