package api

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Params reads query parameters for one endpoint: unknown names and malformed values are
// collected, and Err reports them all at once (a 400 naming every bad parameter).
type Params struct {
	v    url.Values
	errs []error
}

// NewParams accepts only the listed parameter names.
func NewParams(v url.Values, known ...string) *Params {
	p := &Params{v: v}
	ok := make(map[string]bool, len(known))
	for _, k := range known {
		ok[k] = true
	}
	for k := range v {
		if !ok[k] {
			p.Bad("unknown parameter %q", k)
		}
	}
	return p
}

// Bad records an error.
func (p *Params) Bad(format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf(format, args...))
}

// Err is every recorded error, joined; nil when the parameters are good.
func (p *Params) Err() error { return errors.Join(p.errs...) }

// String is the parameter's first value ("" when absent).
func (p *Params) String(name string) string { return p.v.Get(name) }

// Strings is every value of a repeated parameter.
func (p *Params) Strings(name string) []string { return p.v[name] }

// OneOf is the parameter when it is one of allowed ("" when absent).
func (p *Params) OneOf(name string, allowed ...string) string {
	v := p.v.Get(name)
	if v == "" || slices.Contains(allowed, v) {
		return v
	}
	p.Bad("%s %q: want one of %s", name, v, strings.Join(allowed, ", "))
	return ""
}

// Int parses an integer in [lo, hi]; def when absent.
func (p *Params) Int(name string, def, lo, hi int) int {
	s := p.v.Get(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		p.Bad("%s %q: want a whole number from %d to %d", name, s, lo, hi)
		return def
	}
	return n
}

// Bool parses true/false; false when absent.
func (p *Params) Bool(name string) bool {
	s := p.v.Get(name)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		p.Bad("%s %q: want true or false", name, s)
	}
	return b
}

// Duration parses a non-negative Go duration (150ms, 1h); 0 when absent. positive also
// refuses 0.
func (p *Params) Duration(name string, positive bool) time.Duration {
	s := p.v.Get(name)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || (positive && d == 0) {
		p.Bad("%s %q: want a duration such as 150ms or 1h", name, s)
		return 0
	}
	return d
}

// Span times are Unix nanoseconds in an int64: 1678 to 2262. A bound outside would wrap and
// silently match nothing.
var (
	minTime = time.Unix(0, math.MinInt64).Add(time.Hour)
	maxTime = time.Unix(0, math.MaxInt64).Add(-time.Hour)
)

// Time parses RFC 3339 or Unix milliseconds; the zero time when absent.
func (p *Params) Time(name string) time.Time {
	s := p.v.Get(name)
	if s == "" {
		return time.Time{}
	}
	t, err := ParseTime(s)
	if err != nil {
		p.Bad("%s: %v", name, err)
	}
	return t
}

// ParseTime accepts RFC 3339 or Unix milliseconds within the years 1678-2262.
func ParseTime(s string) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		t := time.UnixMilli(ms)
		if ms < minTime.UnixMilli() || ms > maxTime.UnixMilli() {
			return t, fmt.Errorf("%q out of range (years 1678-2262)", s)
		}
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 or Unix milliseconds", s)
	}
	if t.Before(minTime) || t.After(maxTime) {
		return t, fmt.Errorf("%q out of range (years 1678-2262)", s)
	}
	return t, nil
}
