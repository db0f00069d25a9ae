package query

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/tracestore"
)

// parseSearch turns /api/v1/traces parameters into a validated store query. Every value is
// taken literally: the stores build structured queries, never query strings.
func parseSearch(v url.Values, now time.Time) (tracestore.Query, error) {
	var q tracestore.Query
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	known := map[string]bool{"bk": true, "service": true, "operation": true, "start": true, "end": true,
		"lookback": true, "minDuration": true, "maxDuration": true, "errors": true, "dyed": true, "limit": true}
	for k := range v {
		if !known[k] {
			bad("unknown parameter %q", k)
		}
	}
	for _, bk := range v["bk"] {
		kv, err := parseBusinessKey(bk)
		if err != nil {
			bad("%v", err)
			continue
		}
		q.BusinessKeys = append(q.BusinessKeys, kv)
	}
	q.Service, q.Operation = v.Get("service"), v.Get("operation")
	var err error
	if q.Start, err = parseTime(v.Get("start")); err != nil {
		bad("start: %v", err)
	}
	if q.End, err = parseTime(v.Get("end")); err != nil {
		bad("end: %v", err)
	}
	if lb := v.Get("lookback"); lb != "" {
		d, err := time.ParseDuration(lb)
		if err != nil || d <= 0 {
			bad("lookback %q: want a positive duration such as 1h", lb)
		} else if q.Start.IsZero() {
			q.Start = now.Add(-d)
		}
	}
	if q.MinDuration, err = parseDuration(v.Get("minDuration")); err != nil {
		bad("minDuration: %v", err)
	}
	if q.MaxDuration, err = parseDuration(v.Get("maxDuration")); err != nil {
		bad("maxDuration: %v", err)
	}
	if e := v.Get("errors"); e != "" {
		if q.ErrorsOnly, err = strconv.ParseBool(e); err != nil {
			bad("errors %q: want true or false", e)
		}
	}
	if q.Dyed, err = tracestore.ParseDyed(v.Get("dyed")); err != nil {
		bad("%v", err)
	}
	if l := v.Get("limit"); l != "" {
		if q.Limit, err = strconv.Atoi(l); err != nil {
			bad("limit %q: want a number", l)
		}
	}
	if len(errs) == 0 {
		if err := q.Validate(); err != nil {
			return q, err
		}
	}
	return q, errors.Join(errs...)
}

// parseBusinessKey accepts key:value (the API's form) and key=value (the CLI's).
func parseBusinessKey(s string) (schemas.KV, error) {
	i := strings.IndexAny(s, ":=")
	if i <= 0 {
		return schemas.KV{}, fmt.Errorf("business key %q: want key:value", s)
	}
	return schemas.KV{Key: s[:i], Value: s[i+1:]}, nil
}

// Span times are Unix nanoseconds in an int64: 1678 to 2262. A bound outside would wrap and
// silently match nothing.
var (
	minTime = time.Unix(0, math.MinInt64).Add(time.Hour)
	maxTime = time.Unix(0, math.MaxInt64).Add(-time.Hour)
)

// parseTime accepts RFC 3339 or Unix milliseconds.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	var t time.Time
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		t = time.UnixMilli(ms)
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

func parseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration such as 150ms", s)
	}
	return d, nil
}
