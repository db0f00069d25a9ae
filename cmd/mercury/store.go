package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mercury-apm/mercury/tracestore"
	"github.com/mercury-apm/mercury/tracestore/esstore"
	"github.com/mercury-apm/mercury/tracestore/hbasestore"
	"github.com/mercury-apm/mercury/tracestore/pebblestore"
)

// storeFlags choose the trace store: embedded Pebble under --data, or Elasticsearch for the
// index (and rows, unless HBase holds them).
type storeFlags struct {
	data, es, esUser, esPasswordEnv, hbase string
}

func registerStoreFlags(fs *flag.FlagSet, defaultData string) *storeFlags {
	f := &storeFlags{}
	fs.StringVar(&f.data, "data", defaultData, "data directory of the embedded store (used when --es is not set)")
	fs.StringVar(&f.es, "es", "", "Elasticsearch URL for the trace index, e.g. http://127.0.0.1:9200")
	fs.StringVar(&f.esUser, "es-user", "", "Elasticsearch user")
	fs.StringVar(&f.esPasswordEnv, "es-password-env", "MERCURY_ES_PASSWORD", "environment variable holding the Elasticsearch password (kept off the command line)")
	fs.StringVar(&f.hbase, "hbase", "", "HBase REST gateway URL for the trace rows (with --es), e.g. http://127.0.0.1:8080")
	return f
}

// open returns the store and what must be closed on exit.
func (f *storeFlags) open(ctx context.Context) (*tracestore.Store, io.Closer, error) {
	if f.es == "" {
		if f.hbase != "" {
			return nil, nil, errors.New("--hbase holds rows only: it needs --es for the index")
		}
		db, err := pebblestore.Open(filepath.Join(f.data, "traces"), pebblestore.Options{})
		if err != nil {
			return nil, nil, fmt.Errorf("embedded store: %w", err)
		}
		return tracestore.New(db, db), db, nil
	}
	es, err := esstore.New(ctx, esstore.Config{Addresses: []string{f.es}, Username: f.esUser, Password: os.Getenv(f.esPasswordEnv), OmitSpans: f.hbase != ""})
	if err != nil {
		return nil, nil, err
	}
	closer := closeFunc(func() error { es.Close(); return nil })
	if f.hbase == "" {
		return tracestore.New(es, es), closer, nil
	}
	hb, err := hbasestore.New(ctx, hbasestore.Config{URL: f.hbase})
	if err != nil {
		es.Close()
		return nil, nil, err
	}
	return tracestore.New(es, hb), closer, nil
}

type closeFunc func() error

func (f closeFunc) Close() error { return f() }
