package hbasestore_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/storage/hbasestore"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/storetest"
)

func TestMetricsConformance(t *testing.T) {
	backends(t, func(t *testing.T, url func(*testing.T) string) {
		storetest.RunMetrics(t, func(t *testing.T) metricstore.Store {
			hc := &http.Client{Timeout: 10 * time.Second}
			s, err := hbasestore.NewMetrics(context.Background(), hbasestore.MetricsConfig{URL: url(t), Backoff: fastRetry, HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}
