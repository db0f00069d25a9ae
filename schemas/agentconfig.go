package schemas

// AgentConfig is what the query service's agent-config endpoint serves and agents apply
// (agent.RemoteConfig). It is JSON, not Avro: agents poll it over HTTP with an ETag. Absent
// fields keep the agent's local values.
type AgentConfig struct {
	Version    string          `json:"version"`
	SampleRate *float64        `json:"sample_rate,omitempty"`
	Switches   map[string]bool `json:"switches,omitempty"` // category → on; e.g. {"sql": false}
	Kill       bool            `json:"kill,omitempty"`     // stop recording anything
}

// ValidName reports whether s is a name Mercury accepts for domains, services and config
// switches: 1-64 letters, digits, '-', '_' or '.'. It keeps them safe in tracestate values,
// store keys and URLs.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
