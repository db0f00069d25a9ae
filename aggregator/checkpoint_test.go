package aggregator

import (
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/aggregator/phase1"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/retry"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

func TestCheckpointMetadata(t *testing.T) {
	for _, c := range []checkpoint{{offset: 10, wm: 1700000000123456789, intent: -1}, {offset: 10, wm: 5, intent: 99}, {offset: 0, wm: 0, intent: -1}} {
		got, err := parseCheckpoint(c.offset, c.metadata())
		if err != nil || got != c {
			t.Errorf("%+v: round trip %+v %v", c, got, err)
		}
	}
	if c, err := parseCheckpoint(7, ""); err != nil || c.intent != -1 || c.wm != 0 || c.offset != 7 {
		t.Errorf("a plain commit: %+v %v", c, err)
	}
	for _, meta := range []string{"p2 wm=1", "p1", "p1 wm=x", "p1 wm=1 intent=3", "p1 wm=1 color=2", "p1 wm=1 intent=20 extra=1"} {
		_, err := parseCheckpoint(10, meta)
		if err == nil || !retry.IsPermanent(err) || !strings.Contains(err.Error(), "commit metadata") {
			t.Errorf("%q: %v, want a permanent error naming the metadata", meta, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b := bus.Config{Brokers: []string{"127.0.0.1:1"}}
	for name, c := range map[string]struct {
		cfg  Config
		want string
	}{
		"no phase":           {Config{Bus: b}, "phase 0"},
		"phase 3":            {Config{Bus: b, Phase: 3}, "phase 3"},
		"phase 2 no store":   {Config{Bus: b, Phase: 2}, "metric store"},
		"no brokers":         {Config{Phase: 1}, "no brokers"},
		"window 7 s":         {Config{Bus: b, Phase: 1, Fold: phase1.Config{Window: 7 * time.Second}}, "does not divide a minute"},
		"negative partition": {Config{Bus: b, Phase: 1, Partitions: []int{0, -1}}, "partition -1"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", name, err, c.want)
		}
	}
	ok := Config{Bus: b, Phase: 2, Store: store}
	if err := ok.Validate(); err != nil || ok.Group != GroupPhase2 || ok.FlushInterval <= 0 || ok.Fold.Lateness <= 0 || ok.Logger == nil {
		t.Fatalf("defaults: %+v %v", ok, err)
	}
}
