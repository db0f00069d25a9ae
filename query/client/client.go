// Package client calls the query API for the CLI.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/query/api"
	"github.com/mercury-apm/mercury/query/traces"
)

// Client calls the query API (the CLI's `mercury search` and `mercury trace`).
type Client struct {
	BaseURL string
	HTTP    *http.Client
}

// Get fetches an API path into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+path, nil)
	if err != nil {
		return err
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("cannot reach the query API at %s (start it with `mercury up`, or pass --query URL): %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			if resp.StatusCode < 500 {
				return errors.New(e.Error) // the API's own words: what was wrong with the request
			}
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s", resp.Status)
	}
	return json.Unmarshal(body, out)
}

// Search runs GET /api/v1/traces.
func (c *Client) Search(ctx context.Context, params url.Values) (traces.SearchResult, error) {
	var r traces.SearchResult
	return r, c.Get(ctx, "/api/v1/traces?"+params.Encode(), &r)
}

// Trace runs GET /api/v1/traces/{id}.
func (c *Client) Trace(ctx context.Context, id string) (traces.Trace, error) {
	var t traces.Trace
	return t, c.Get(ctx, "/api/v1/traces/"+url.PathEscape(id), &t)
}

// PrintSearch writes one line per trace.
func PrintSearch(w io.Writer, r traces.SearchResult) {
	if len(r.Traces) == 0 {
		fmt.Fprintln(w, "no traces found")
		return
	}
	for _, t := range r.Traces {
		errs := ""
		if t.ErrorCount > 0 {
			errs = fmt.Sprintf("  %d error(s)", t.ErrorCount)
		}
		fmt.Fprintf(w, "%s  %s  %-10s %s %s  %d spans  [%s]%s  %s\n", t.TraceID, t.Start.Local().Format("15:04:05.000"),
			fmtDuration(t.DurationNano), t.RootService, t.RootOperation, t.SpanCount, strings.Join(t.Services, ","), errs, fmtKeys(t.BusinessKeys))
	}
}

// PrintTrace draws the call tree with offsets and durations.
func PrintTrace(w io.Writer, t traces.Trace) {
	fmt.Fprintf(w, "trace %s  %d spans  %d error(s)  %s  services: %s\n", t.TraceID, t.SpanCount, t.ErrorCount,
		fmtDuration(t.DurationNano), strings.Join(t.Services, ", "))
	var walk func(s *traces.Span, prefix string, last bool)
	walk = func(s *traces.Span, prefix string, last bool) {
		branch, next := "├─ ", "│  "
		if last {
			branch, next = "└─ ", "   "
		}
		flag := ""
		if s.Status == "ERROR" {
			flag = "  ✗ " + strings.TrimSpace(s.ErrorType+" "+fmt.Sprint(s.StatusCode))
		}
		if s.Orphan {
			flag += "  (parent not stored)"
		}
		offset := s.Start.Sub(t.Start)
		fmt.Fprintf(w, "%s%s%s %s  +%s %s%s%s\n", prefix, branch, s.Service, s.Operation, fmtDuration(int64(offset)),
			fmtDuration(s.DurationNano), fmtKeys(s.BusinessKeys), flag)
		for i, c := range s.Children {
			walk(c, prefix+next, i == len(s.Children)-1)
		}
	}
	for i, r := range t.Roots {
		walk(r, "", i == len(t.Roots)-1)
	}
}

func fmtDuration(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func fmtKeys(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(m))
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return "  {" + strings.Join(keys, " ") + "}"
}
