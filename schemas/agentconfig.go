package schemas

// AgentConfig is what the query service's agent-config endpoint serves and agents apply
// (agent.RemoteConfig). It is JSON, not Avro: agents poll it over HTTP with an ETag. Absent
// fields keep the agent's local values; stored levels (default, group, domain, service) are
// merged field by field, the more specific level winning.
type AgentConfig struct {
	Version    string          `json:"version"`
	SampleRate *float64        `json:"sample_rate,omitempty"`
	Switches   map[string]bool `json:"switches,omitempty"` // category → on; e.g. {"sql": false}
	Kill       *bool           `json:"kill,omitempty"`     // stop recording anything
	// OverrideDomainSampling: re-decide sampling for traces entering this domain from another
	// (the agent's local OverrideDomainSampling when absent).
	OverrideDomainSampling *bool `json:"override_domain_sampling,omitempty"`
	// Group names a configuration group this level inherits from (stored levels only).
	Group string `json:"group,omitempty"`
}

// Merge lays over on top of c: every field over sets wins, switches merge by category.
func (c AgentConfig) Merge(over AgentConfig) AgentConfig {
	if over.SampleRate != nil {
		c.SampleRate = over.SampleRate
	}
	if over.Kill != nil {
		c.Kill = over.Kill
	}
	if over.OverrideDomainSampling != nil {
		c.OverrideDomainSampling = over.OverrideDomainSampling
	}
	if len(over.Switches) > 0 {
		sw := make(map[string]bool, len(c.Switches)+len(over.Switches))
		for k, v := range c.Switches {
			sw[k] = v
		}
		for k, v := range over.Switches {
			sw[k] = v
		}
		c.Switches = sw
	}
	return c
}

// ValidName reports whether s is a name Mercury accepts for domains, services and config
// switches: 1-64 letters, digits, '-', '_' or '.'. It keeps them safe in tracestate values,
// store keys and URLs.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ValidNameByte(s[i]) {
			return false
		}
	}
	return true
}

// ValidNameByte reports whether c may appear in a name (see ValidName).
func ValidNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}
