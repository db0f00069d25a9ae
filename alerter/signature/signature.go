// Package signature names what an event is about, so the alerter folds a thousand
// occurrences of one problem into one alert: service, event type, exception class, the
// message with what varies between occurrences (numbers, ids, hex, uuids, quoted values)
// stripped, and the top stack frames. A rule's fingerprint may name other fields instead.
package signature

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/mercury-apm/mercury/schemas"
)

// DefaultFields make the signature when no rule says otherwise.
var DefaultFields = []string{"service", "type", "name", "message", "stack"}

var (
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	uuid   = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	hexNum = regexp.MustCompile(`(?i)\b0x[0-9a-f]+\b|\b[0-9a-f]*[0-9][0-9a-f]*[a-f][0-9a-f]*\b|\b[0-9a-f]*[a-f][0-9a-f]*[0-9][0-9a-f]*\b`)
	number = regexp.MustCompile(`\d+(?:\.\d+)?`)
	spaces = regexp.MustCompile(`\s+`)
)

// Normalize strips the parts of msg that differ between occurrences of one problem:
// quoted values become "?", uuids <uuid>, hex runs (0x…, or mixed hex with letters and
// digits, like trace ids) <hex>, every other number <n>; runs of spaces become one.
func Normalize(msg string) string {
	msg = quoted.ReplaceAllString(msg, `"?"`)
	msg = uuid.ReplaceAllString(msg, "<uuid>")
	msg = hexNum.ReplaceAllStringFunc(msg, func(m string) string {
		if len(m) < 6 && !strings.HasPrefix(strings.ToLower(m), "0x") {
			return m // short words like "e2e" or "a1" are left to the number rule
		}
		return "<hex>"
	})
	msg = number.ReplaceAllString(msg, "<n>")
	return strings.TrimSpace(spaces.ReplaceAllString(msg, " "))
}

// Frames returns the function names of the top n frames of stack, in the formats the agent
// (function, then a tab-indented file:line), runtime/debug.Stack and Java-style "at" lines
// write; runtime and panic frames are left out, since every stack has them.
func Frames(stack string, n int) []string {
	var out []string
	for line := range strings.Lines(stack) {
		if len(out) >= n {
			break
		}
		t := strings.TrimSpace(line)
		if at, ok := strings.CutPrefix(t, "at "); ok {
			t = at
		} else if t == "" || line[0] == '\t' || line[0] == ' ' || strings.HasPrefix(t, "goroutine ") || strings.HasPrefix(t, "created by ") {
			continue
		}
		if i := strings.LastIndexByte(t, '('); i > 0 && strings.HasSuffix(t, ")") {
			t = t[:i]
		}
		if t == "panic" || strings.HasPrefix(t, "runtime.") || strings.HasPrefix(t, "runtime/debug.") {
			continue
		}
		out = append(out, t)
	}
	return out
}

// Of is the signature of ev over fields (DefaultFields when empty), with depth stack frames:
// 16 hex digits of a SHA-256 of the fields' values.
func Of(ev *schemas.Event, fields []string, depth int) string {
	if len(fields) == 0 {
		fields = DefaultFields
	}
	h := sha256.New()
	for _, f := range fields {
		h.Write([]byte(f))
		h.Write([]byte{0})
		h.Write([]byte(field(ev, f, depth)))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func field(ev *schemas.Event, f string, depth int) string {
	switch f {
	case "service":
		return ev.Service
	case "domain":
		return ev.Domain
	case "type":
		return ev.Type
	case "name":
		return ev.Name
	case "message":
		return Normalize(ev.Message)
	case "stack":
		return strings.Join(Frames(ev.Stack, depth), "\n")
	case "operation":
		return ev.Operation
	case "host":
		return ev.Host
	}
	if name, ok := strings.CutPrefix(f, "attr:"); ok {
		v, _ := schemas.Get(ev.Attributes, name)
		return v
	}
	return ""
}
