package main

import (
	"context"
	"errors"
	"flag"
	"net/url"
	"os"

	"github.com/mercury-apm/mercury/query/client"
)

// runSearch: mercury search [flags] key=value ... prints matching traces.
func runSearch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("search", flag.ContinueOnError)
	api := fs.String("query", "http://127.0.0.1:8080", "query API base URL")
	service := fs.String("service", "", "service")
	operation := fs.String("operation", "", "operation (needs --service)")
	errorType := fs.String("error-type", "", "only spans that failed with this exception type, e.g. '*payment.DeclinedError'")
	event := fs.String("event", "", "only spans that carry an event of this name, e.g. exception")
	lookback := fs.String("lookback", "", "only traces this recent, e.g. 1h")
	minDur := fs.String("min-duration", "", "only spans at least this long, e.g. 100ms")
	errorsOnly := fs.Bool("errors", false, "only failed spans")
	limit := fs.String("limit", "", "at most this many traces (default 20)")
	keys, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	p := url.Values{}
	for _, kv := range keys {
		p.Add("bk", kv)
	}
	set := func(k, v string) {
		if v != "" {
			p.Set(k, v)
		}
	}
	set("service", *service)
	set("operation", *operation)
	set("errorType", *errorType)
	set("event", *event)
	set("lookback", *lookback)
	set("minDuration", *minDur)
	set("limit", *limit)
	if *errorsOnly {
		p.Set("errors", "true")
	}
	if len(p) == 0 {
		return errors.New("usage: mercury search [flags] key=value ... (or --service, --error-type, --event)")
	}
	res, err := (&client.Client{BaseURL: *api}).Search(ctx, p)
	if err != nil {
		return err
	}
	client.PrintSearch(os.Stdout, res)
	return nil
}

// runTrace: mercury trace ID prints the call tree.
func runTrace(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	api := fs.String("query", "http://127.0.0.1:8080", "query API base URL")
	ids, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		return errors.New("usage: mercury trace [--query URL] TRACE_ID")
	}
	t, err := (&client.Client{BaseURL: *api}).Trace(ctx, ids[0])
	if err != nil {
		return err
	}
	client.PrintTrace(os.Stdout, t)
	return nil
}
