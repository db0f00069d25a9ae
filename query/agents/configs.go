package agents

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/mercury-apm/mercury/schemas"
)

// DefaultConfigKey holds the configuration of services that have none of their own.
const DefaultConfigKey = "*"

// Level names a stored configuration: the default, a named group, a domain or a service.
type Level struct {
	Kind string // "default", "group", "domain" or "service"
	Name string // empty for the default
}

// Configs holds the dynamic agent configuration by level — a default, named groups, domains
// and services — persisted to one JSON file (written atomically) so a restart serves the same
// versions and agents get 304s. An agent gets the default, then its domain's level, then its
// service's, each after the group it names, merged field by field (AgentConfig.Merge).
type Configs struct {
	mu   sync.RWMutex
	path string
	f    configFile
}

// configFile is the stored form. Configs is the format before domains (service → config, "*"
// the default), read once and migrated.
type configFile struct {
	Seq      int64                          `json:"seq"`
	Default  *schemas.AgentConfig           `json:"default,omitempty"`
	Groups   map[string]schemas.AgentConfig `json:"groups,omitempty"`
	Domains  map[string]schemas.AgentConfig `json:"domains,omitempty"`
	Services map[string]schemas.AgentConfig `json:"services,omitempty"`
	// Info is what the domain registry keeps of each domain.
	Info    map[string]DomainInfo          `json:"domain_info,omitempty"`
	Configs map[string]schemas.AgentConfig `json:"configs,omitempty"`
}

// DomainInfo is the registry's record of a domain.
type DomainInfo struct {
	FirstSeen time.Time `json:"first_seen"`
	Owner     string    `json:"owner,omitempty"`
}

// OpenConfigs loads path, or starts empty when it does not exist ("" keeps it in memory).
func OpenConfigs(path string) (*Configs, error) {
	c := &Configs{path: path}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, err
		default:
			if err := json.Unmarshal(b, &c.f); err != nil {
				return nil, fmt.Errorf("agent configs %s: %w", path, err)
			}
		}
	}
	c.init()
	for k, rc := range c.f.Configs {
		if k == DefaultConfigKey {
			c.f.Default = &rc
		} else {
			c.f.Services[k] = rc
		}
	}
	c.f.Configs = nil
	return c, nil
}

func (c *Configs) init() {
	if c.f.Groups == nil {
		c.f.Groups = map[string]schemas.AgentConfig{}
	}
	if c.f.Domains == nil {
		c.f.Domains = map[string]schemas.AgentConfig{}
	}
	if c.f.Services == nil {
		c.f.Services = map[string]schemas.AgentConfig{}
	}
	if c.f.Info == nil {
		c.f.Info = map[string]DomainInfo{}
	}
}

// Get returns the configuration an agent of service in domain runs with: the levels merged,
// versioned by the newest level that contributed. ok is false when no level applies.
func (c *Configs) Get(domain, service string) (rc schemas.AgentConfig, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var newest int64
	apply := func(l schemas.AgentConfig) {
		if g, found := c.f.Groups[l.Group]; l.Group != "" && found {
			rc = rc.Merge(g)
			newest = max(newest, version(g))
		}
		rc = rc.Merge(l)
		newest = max(newest, version(l))
		ok = true
	}
	if c.f.Default != nil {
		apply(*c.f.Default)
	}
	if l, found := c.f.Domains[domain]; found && domain != "" {
		apply(l)
	}
	if l, found := c.f.Services[service]; found {
		apply(l)
	}
	rc.Version = strconv.FormatInt(newest, 10)
	return rc, ok
}

func version(rc schemas.AgentConfig) int64 {
	n, _ := strconv.ParseInt(rc.Version, 10, 64)
	return n
}

// All is every stored level, for the configuration editor.
func (c *Configs) All() (def *schemas.AgentConfig, groups, domains, services map[string]schemas.AgentConfig) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.f.Default, maps.Clone(c.f.Groups), maps.Clone(c.f.Domains), maps.Clone(c.f.Services)
}

// Put validates and stores one level's configuration under a new version.
func (c *Configs) Put(l Level, rc schemas.AgentConfig) (schemas.AgentConfig, error) {
	if err := validateRemoteConfig(rc); err != nil {
		return rc, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc.Group != "" {
		if l.Kind == "group" {
			return rc, fmt.Errorf("%w: a group cannot name a group", errInvalidConfig)
		}
		if _, ok := c.f.Groups[rc.Group]; !ok {
			return rc, fmt.Errorf("%w: group %q does not exist (PUT it first)", errInvalidConfig, rc.Group)
		}
	}
	old := c.f
	old.Groups, old.Domains, old.Services = maps.Clone(c.f.Groups), maps.Clone(c.f.Domains), maps.Clone(c.f.Services)
	c.f.Seq++
	rc.Version = strconv.FormatInt(c.f.Seq, 10)
	switch l.Kind {
	case "default":
		c.f.Default = &rc
	case "group":
		c.f.Groups[l.Name] = rc
	case "domain":
		c.f.Domains[l.Name] = rc
	case "service":
		c.f.Services[l.Name] = rc
	default:
		c.f = old
		return rc, fmt.Errorf("%w: level %q", errInvalidConfig, l.Kind)
	}
	if err := c.save(); err != nil {
		c.f = old
		return rc, err
	}
	return rc, nil
}

// SeenDomain records when a domain first reported (persisted the first time only).
func (c *Configs) SeenDomain(domain string, at time.Time) {
	c.mu.RLock()
	_, known := c.f.Info[domain]
	c.mu.RUnlock()
	if known || domain == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, known := c.f.Info[domain]; !known {
		c.f.Info[domain] = DomainInfo{FirstSeen: at.UTC()}
		_ = c.save() // best effort: the next first sighting writes it again
	}
}

// SetOwner records a domain's owner (a team, a person).
func (c *Configs) SetOwner(domain, owner string) (DomainInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	info, had := c.f.Info[domain]
	if !had {
		info.FirstSeen = time.Now().UTC()
	}
	next := info
	next.Owner = owner
	c.f.Info[domain] = next
	if err := c.save(); err != nil {
		if had {
			c.f.Info[domain] = info
		} else {
			delete(c.f.Info, domain)
		}
		return info, err
	}
	return next, nil
}

// Domains is what the registry knows of every domain.
func (c *Configs) Domains() map[string]DomainInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return maps.Clone(c.f.Info)
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
	b, _ := json.MarshalIndent(c.f, "", "  ")
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
