package agents

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/mercury-apm/mercury/schemas"
)

// DefaultConfigKey holds the configuration of services that have none of their own.
const DefaultConfigKey = "*"

// Configs holds the dynamic agent configuration per service, persisted to one JSON file
// (written atomically) so a restart serves the same versions and agents get 304s.
type Configs struct {
	mu   sync.RWMutex
	path string
	cfg  map[string]schemas.AgentConfig
	seq  int64
}

type agentConfigFile struct {
	Seq     int64                          `json:"seq"`
	Configs map[string]schemas.AgentConfig `json:"configs"`
}

// OpenConfigs loads path, or starts empty when it does not exist ("" keeps it in memory).
func OpenConfigs(path string) (*Configs, error) {
	c := &Configs{path: path, cfg: map[string]schemas.AgentConfig{}}
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	var f agentConfigFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("agent configs %s: %w", path, err)
	}
	if f.Configs != nil {
		c.cfg = f.Configs
	}
	c.seq = f.Seq
	return c, nil
}

// Get returns the service's configuration, else the default one; ok is false when neither
// exists.
func (c *Configs) Get(service string) (schemas.AgentConfig, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if rc, ok := c.cfg[service]; ok {
		return rc, true
	}
	rc, ok := c.cfg[DefaultConfigKey]
	return rc, ok
}

// Put validates and stores a service's configuration under a new version.
func (c *Configs) Put(service string, rc schemas.AgentConfig) (schemas.AgentConfig, error) {
	if err := validateRemoteConfig(rc); err != nil {
		return rc, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	rc.Version = strconv.FormatInt(c.seq, 10)
	old, had := c.cfg[service]
	c.cfg[service] = rc
	if err := c.save(); err != nil {
		if had {
			c.cfg[service] = old
		} else {
			delete(c.cfg, service)
		}
		return rc, err
	}
	return rc, nil
}

// errInvalidConfig marks a configuration rejected by validation (a 400, not a 500).
var errInvalidConfig = errors.New("invalid agent config")

func validateRemoteConfig(rc schemas.AgentConfig) error {
	if rc.SampleRate != nil && (*rc.SampleRate < 0 || *rc.SampleRate > 1) {
		return fmt.Errorf("%w: sample_rate %v outside [0,1]", errInvalidConfig, *rc.SampleRate)
	}
	if len(rc.Switches) > 32 {
		return fmt.Errorf("%w: %d switches, at most 32", errInvalidConfig, len(rc.Switches))
	}
	for k := range rc.Switches {
		if !schemas.ValidName(k) {
			return fmt.Errorf("%w: switch %q: want 1-64 letters, digits, '-', '_' or '.'", errInvalidConfig, k)
		}
	}
	return nil
}

func (c *Configs) save() error {
	if c.path == "" {
		return nil
	}
	b, _ := json.MarshalIndent(agentConfigFile{Seq: c.seq, Configs: c.cfg}, "", "  ")
	tmp := c.path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, c.path)
}
