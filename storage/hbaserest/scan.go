package hbaserest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mercury-apm/mercury/internal/retry"
)

// Scan walks the rows of table in [spec.StartRow, spec.EndRow) (empty: unbounded) in row-key
// order with a REST scanner, spec.Batch cells per page, and calls fn with each page's rows. A
// row wider than a page arrives in several calls, one part each. The scanner is deleted on
// every exit path.
func (c *Client) Scan(ctx context.Context, table string, spec ScannerSpec, fn func(Row) error) (err error) {
	body, _ := json.Marshal(spec)
	t := "/" + url.PathEscape(table)
	_, loc, err := c.Do(ctx, http.MethodPut, t+"/scanner", nil, body)
	if err != nil {
		return err
	}
	lu, perr := url.Parse(string(loc))
	if perr != nil || !strings.HasPrefix(lu.EscapedPath(), t+"/scanner/") {
		return retry.Permanent(fmt.Errorf("hbaserest: scanner location %q", loc))
	}
	path := lu.EscapedPath()
	defer func() {
		// A fresh context: the caller's may be done, and a leaked scanner holds server
		// resources until its lease expires.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _, derr := c.Do(dctx, http.MethodDelete, path, nil, nil)
		err = errors.Join(err, derr)
	}()
	for {
		code, page, err := c.Do(ctx, http.MethodGet, path, nil, nil)
		if err != nil {
			return err
		}
		if code == http.StatusNoContent {
			return nil
		}
		var cs CellSet
		if err := json.Unmarshal(page, &cs); err != nil {
			return retry.Permanent(fmt.Errorf("hbaserest: scanner page: %w", err))
		}
		for _, r := range cs.Row {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
}
