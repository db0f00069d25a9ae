package agent

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/mercury-apm/mercury/schemas"
)

// MaskConfig says what never leaves the process in clear. Masking runs on the writer goroutine,
// before encoding, so the hot path does not pay for it.
type MaskConfig struct {
	// Keys whose values are replaced whole; matched case-insensitively as substrings of tag,
	// event-attribute and business-key names. Nil takes DefaultMaskKeys; empty masks none.
	Keys []string
	// Patterns are extra regular expressions masked wherever they occur in values.
	Patterns []string
	// NoBuiltinPatterns turns off the built-in number detectors: mobile phone numbers, Chinese
	// resident ID numbers (checksum verified) and bank card numbers (Luhn verified).
	NoBuiltinPatterns bool
	// MaskBusinessKeys applies the value detectors to business keys too. Off by default, so a
	// user id that looks like a phone number stays searchable; key-name masking always applies.
	MaskBusinessKeys bool
}

// DefaultMaskKeys are the key names masked when MaskConfig.Keys is nil.
var DefaultMaskKeys = []string{"password", "passwd", "pwd", "secret", "token", "authorization", "cookie", "api_key", "apikey", "credential", "private_key"}

const masked = "***"

type masker struct {
	keys     []string
	seen     map[string]bool // key → sensitive; only the writer goroutine uses the masker
	patterns []*regexp.Regexp
	builtin  bool
	bk       bool
}

func newMasker(c MaskConfig) (*masker, error) {
	m := &masker{seen: map[string]bool{}, builtin: !c.NoBuiltinPatterns, bk: c.MaskBusinessKeys}
	keys := c.Keys
	if keys == nil {
		keys = DefaultMaskKeys
	}
	for _, k := range keys {
		m.keys = append(m.keys, strings.ToLower(k))
	}
	for _, p := range c.Patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("agent: mask pattern %q: %w", p, err)
		}
		m.patterns = append(m.patterns, re)
	}
	return m, nil
}

// sensitiveKey is memoised: services use few distinct key names, and matching every name
// against every configured key on every span would cost more than encoding the span.
func (m *masker) sensitiveKey(k string) bool {
	if v, ok := m.seen[k]; ok {
		return v
	}
	v := false
	for _, s := range m.keys {
		if containsFold(k, s) {
			v = true
			break
		}
	}
	if len(m.seen) >= 4096 { // a service with unbounded key names gets no memo, not unbounded memory
		clear(m.seen)
	}
	m.seen[strings.Clone(k)] = v // k may point into the writer's batch, which is reused
	return v
}

// containsFold is strings.Contains(strings.ToLower(s), lowerSub) without allocating.
func containsFold(s, lowerSub string) bool {
	n := len(lowerSub)
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for ; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lowerSub[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}

// value masks detected numbers and configured patterns inside v.
func (m *masker) value(v string) string {
	if m.builtin {
		v = maskNumbers(v)
	}
	for _, re := range m.patterns {
		v = re.ReplaceAllString(v, masked)
	}
	return v
}

func (m *masker) kvs(kvs []schemas.KV, values bool) {
	for i := range kvs {
		switch {
		case m.sensitiveKey(kvs[i].Key):
			kvs[i].Value = masked
		case values:
			kvs[i].Value = m.value(kvs[i].Value)
		}
	}
}

func (m *masker) span(s *schemas.Span) {
	m.kvs(s.Tags, true)
	m.kvs(s.BusinessKeys, m.bk)
	for i := range s.Events {
		m.kvs(s.Events[i].Attributes, true)
	}
}

func (m *masker) event(e *schemas.Event) {
	e.Message = m.value(e.Message)
	m.kvs(e.Attributes, true)
}

// maskNumbers finds runs of digits and masks those that are phone, ID-card or bank-card
// numbers, keeping a prefix and suffix so support staff can still match them
// (13812345678 → 138****5678). Hand-written: regexps cost too much on every tag value.
func maskNumbers(v string) string {
	var out []byte // allocated only when something is masked
	for i := 0; i < len(v); {
		if !isDigit(v[i]) || (i > 0 && isDigit(v[i-1])) {
			i++
			continue
		}
		j := i
		for j < len(v) && isDigit(v[j]) {
			j++
		}
		end := j
		if j-i == 17 && j < len(v) && (v[j] == 'X' || v[j] == 'x') {
			end = j + 1 // ID card with X checksum
		}
		run := v[i:end]
		if end < len(v) && isDigit(v[end]) {
			i = end
			continue
		}
		keep := 0
		switch {
		case len(run) == 11 && run[0] == '1' && run[1] >= '3':
			keep = 3 // mobile: 3 + 4 masked + 4
		case len(run) == 13 && run[:3] == "861" && run[3] >= '3':
			keep = 5 // mobile with country code
		case len(run) == 18 && idCardValid(run):
			keep = 6
		case len(run) >= 13 && len(run) <= 19 && luhnValid(run):
			keep = 4
		}
		if keep > 0 {
			if out == nil {
				out = append(make([]byte, 0, len(v)), v...)
			}
			for k := i + keep; k < end-4; k++ {
				out[k] = '*'
			}
		}
		i = end
	}
	if out == nil {
		return v
	}
	return string(out)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func luhnValid(s string) bool {
	sum := 0
	for i := 0; i < len(s); i++ {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// idCardValid checks the GB 11643 checksum of an 18-character resident ID number.
func idCardValid(s string) bool {
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i := 0; i < 17; i++ {
		if !isDigit(s[i]) {
			return false
		}
		sum += int(s[i]-'0') * weights[i]
	}
	check := "10X98765432"[sum%11]
	last := s[17]
	if last == 'x' {
		last = 'X'
	}
	return last == check
}
