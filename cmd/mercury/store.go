package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/mercury-apm/mercury/storage"
	"github.com/mercury-apm/mercury/storage/metricstore"
)

// storeFlags choose the stores: embedded Pebble under --data, or Elasticsearch for the
// index (and rows, unless HBase holds them).
type storeFlags struct {
	data, es, esUser, esPasswordEnv, hbase string
}

func registerStoreFlags(fs *flag.FlagSet, defaultData string) *storeFlags {
	f := &storeFlags{}
	fs.StringVar(&f.data, "data", defaultData, "data directory of the embedded stores (used when --es is not set)")
	fs.StringVar(&f.es, "es", "", "Elasticsearch URL for the trace index, e.g. http://127.0.0.1:9200")
	fs.StringVar(&f.esUser, "es-user", "", "Elasticsearch user")
	fs.StringVar(&f.esPasswordEnv, "es-password-env", "MERCURY_ES_PASSWORD", "environment variable holding the Elasticsearch password (kept off the command line)")
	fs.StringVar(&f.hbase, "hbase", "", "HBase REST gateway URL for the trace rows (with --es) and, on query, the alert board the alerter keeps there, e.g. http://127.0.0.1:8080")
	return f
}

// openForReading opens what the read commands (query, audit) need: the trace stores and the
// metric store, embedded under --data or in HBase. closeAll releases both.
func (f *storeFlags) openForReading(ctx context.Context) (_ *storage.Stores, _ metricstore.Store, closeAll func(), err error) {
	stores, err := storage.Open(ctx, f.config(0))
	if err != nil {
		return nil, nil, nil, err
	}
	ms, err := storage.OpenMetrics(ctx, storage.Config{DataDir: f.data, HBaseURL: f.hbase})
	if err != nil {
		stores.Close()
		return nil, nil, nil, err
	}
	return stores, ms, func() { ms.Close(); stores.Close() }, nil
}

// config is the storage configuration the flags describe.
func (f *storeFlags) config(retention time.Duration) storage.Config {
	return storage.Config{DataDir: f.data, ESURL: f.es, ESUser: f.esUser, ESPassword: os.Getenv(f.esPasswordEnv),
		HBaseURL: f.hbase, Retention: retention}
}
