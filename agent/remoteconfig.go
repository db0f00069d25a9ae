package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// RemoteConfig is what the config endpoint (or file) serves. Absent fields keep local values.
type RemoteConfig = schemas.AgentConfig

// runtimeConfig is the hot path's view, swapped atomically.
type runtimeConfig struct {
	sampleRate     float64
	killed         bool
	overrideDomain bool
	off            map[string]bool
	version        string
}

// Apply installs a remote configuration now (the poller calls it; hosts may too).
func (a *Agent) Apply(rc RemoteConfig) error {
	rt := &runtimeConfig{sampleRate: a.cfg.SampleRate, killed: rc.Kill != nil && *rc.Kill,
		overrideDomain: a.cfg.OverrideDomainSampling, off: map[string]bool{}, version: rc.Version}
	if rc.OverrideDomainSampling != nil {
		rt.overrideDomain = *rc.OverrideDomainSampling
	}
	if rc.SampleRate != nil {
		if r := *rc.SampleRate; r < 0 || r > 1 {
			return fmt.Errorf("agent: sample_rate %v outside [0,1]", r)
		}
		rt.sampleRate = *rc.SampleRate
	}
	for cat, on := range rc.Switches {
		if !on {
			rt.off[cat] = true
		}
	}
	a.runtime.Store(rt)
	return nil
}

// pollConfig fetches the config on an interval. Failures keep the last good config and are
// logged at most once per failure streak.
func (a *Agent) pollConfig() {
	defer a.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-a.stop; cancel() }()
	client := &http.Client{Timeout: 5 * time.Second}
	var etag string
	var mtime time.Time
	failing := false
	tick := time.NewTicker(a.cfg.ConfigPoll)
	defer tick.Stop()
	for {
		var err error
		if a.cfg.ConfigURL != "" {
			etag, err = a.fetchConfig(ctx, client, etag)
		} else {
			mtime, err = a.readConfigFile(mtime)
		}
		if err != nil && !failing && ctx.Err() == nil {
			a.cfg.Logger.Printf("mercury agent: config: %v (keeping version %s)", err, a.runtime.Load().version)
		}
		failing = err != nil
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

func (a *Agent) fetchConfig(ctx context.Context, client *http.Client, etag string) (string, error) {
	u, err := url.Parse(a.cfg.ConfigURL)
	if err != nil {
		return etag, err
	}
	q := u.Query()
	q.Set("service", a.cfg.Service)
	q.Set("domain", a.cfg.Domain)
	u.RawQuery = q.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := client.Do(req)
	if err != nil {
		return etag, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return etag, nil
	case http.StatusOK:
	default:
		return etag, fmt.Errorf("GET %s: %s", u.Redacted(), resp.Status)
	}
	var rc RemoteConfig
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rc); err != nil {
		return etag, fmt.Errorf("decode config: %w", err)
	}
	if err := a.Apply(rc); err != nil {
		return etag, err
	}
	return resp.Header.Get("ETag"), nil
}

func (a *Agent) readConfigFile(last time.Time) (time.Time, error) {
	info, err := os.Stat(a.cfg.ConfigFile)
	if err != nil {
		return last, err
	}
	if info.ModTime().Equal(last) {
		return last, nil
	}
	b, err := os.ReadFile(a.cfg.ConfigFile)
	if err != nil {
		return last, err
	}
	var rc RemoteConfig
	if err := json.Unmarshal(b, &rc); err != nil {
		return last, fmt.Errorf("%s: %w", a.cfg.ConfigFile, err)
	}
	return info.ModTime(), a.Apply(rc)
}
