// Package hbaserest is the HBase client every HBase backend shares: the REST gateway's JSON
// protocol (`hbase rest start`: base64 keys and cells; PUT /{table}/{row}, GET multiget,
// scanners), with retries of 408/429/5xx and transport errors and table creation. gohbase
// cannot be obtained here; a native client can replace this one behind the backends.
package hbaserest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"
)

// Client talks to one REST gateway. Safe for concurrent use.
type Client struct {
	base    *url.URL
	hc      *http.Client
	backoff retry.Backoff
}

// New checks the URL; hc nil is a client with a 30 s timeout, a zero backoff is
// retry.StoreBackoff.
func New(rawURL string, hc *http.Client, backoff retry.Backoff) (*Client, error) {
	base, err := url.Parse(strings.TrimSuffix(rawURL, "/"))
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, retry.Permanent(fmt.Errorf("hbaserest: bad URL %q", rawURL))
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	if backoff == (retry.Backoff{}) {
		backoff = retry.StoreBackoff
	}
	return &Client{base: base, hc: hc, backoff: backoff}, nil
}

// EnsureTable creates the namespace and the table with one column family keeping one version
// for ttl, unless they exist.
func (c *Client) EnsureTable(ctx context.Context, table, family string, ttl time.Duration) error {
	if ns, _, ok := strings.Cut(table, ":"); ok {
		code, _, err := c.Do(ctx, http.MethodGet, "/namespaces/"+url.PathEscape(ns), nil, nil, http.StatusNotFound)
		if err != nil {
			return err
		}
		if code == http.StatusNotFound {
			// 201 created; a concurrent creator makes it fail with a conflict-like status,
			// so only a later failure to create the table counts.
			_, _, _ = c.Do(ctx, http.MethodPost, "/namespaces/"+url.PathEscape(ns), nil, nil)
		}
	}
	path := "/" + url.PathEscape(table) + "/schema"
	code, _, err := c.Do(ctx, http.MethodGet, path, nil, nil, http.StatusNotFound)
	if err != nil || code != http.StatusNotFound {
		return err
	}
	body, _ := json.Marshal(TableSchema{Name: table, ColumnSchema: []ColumnSchema{{
		Name: family, TTL: strconv.FormatInt(int64(ttl/time.Second), 10), Versions: "1",
	}}})
	_, _, err = c.Do(ctx, http.MethodPut, path, nil, body)
	return err
}

// Do sends one request with retries and returns the status and body. 2xx and the statuses in
// ok are successes; anything else is an error classified by retry.StatusError. path must be
// escaped already.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body []byte, ok ...int) (int, []byte, error) {
	var (
		code int
		out  []byte
	)
	err := c.backoff.Do(ctx, func() error {
		var err error
		code, out, err = c.once(ctx, method, path, query, body)
		if err != nil {
			return err
		}
		if code/100 == 2 || slices.Contains(ok, code) {
			return nil
		}
		return fmt.Errorf("hbaserest: %s %s: %w: %s", method, path, retry.StatusError(code, "status"), snippet(out))
	})
	return code, out, err
}

func snippet(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return strings.TrimSpace(string(b))
}

func (c *Client) once(ctx context.Context, method, path string, query url.Values, body []byte) (int, []byte, error) {
	u := c.base.String() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, retry.Permanent(err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, retry.Retryable(ctx.Err())
		}
		return 0, nil, retry.Retryable(fmt.Errorf("hbaserest: %s %s: %w", method, path, err))
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, retry.Retryable(fmt.Errorf("hbaserest: %s %s: read: %w", method, path, err))
	}
	if method == http.MethodPut && resp.StatusCode == http.StatusCreated {
		if loc := resp.Header.Get("Location"); loc != "" {
			out = []byte(loc) // scanners: the body is empty, the id is in Location
		}
	}
	return resp.StatusCode, out, nil
}
