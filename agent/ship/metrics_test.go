package ship

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsHealthAndCompression ships with lz4 and a byte-rate cap, then checks that the
// Prometheus figures and the Stats snapshot agree.
func TestMetricsHealthAndCompression(t *testing.T) {
	spoolDir := t.TempDir()
	b := startBroker(t, "", "")
	defer b.Close()
	w := newSpoolWriter(t, spoolDir, StreamSpans, schemas.NameSpan)
	gen := newSpanGen(5)
	want := map[schemas.SpanID]bool{}
	var size int64
	for range 4 {
		w.rotate()
		bodies, ids := gen.bodies(100)
		for i := range ids {
			want[ids[i]] = true
			size += int64(len(bodies[i]) + schemas.SingleObjectHeaderLen)
		}
		w.block(bodies)
	}
	w.close()
	// A cap of a third of the data per second: the 4 batches of ~1/4 each need at least
	// 3 × 1/4 × 3 s ≈ 2 s in total, well above what they take unthrottled.
	rate := size / 3
	sh := startShipper(t, Config{Spool: spoolDir, Bus: bus.Config{Brokers: []string{b.Addr()}}, Streams: []string{StreamSpans},
		BatchRecords: 100, Compression: "lz4", RateBytes: rate, Poll: 5 * time.Millisecond, Logger: quietLog()})
	start := time.Now()
	c := newSpanConsumer(t, b.Addr(), "test-metrics")
	c.readUntil(30*time.Second, want)
	waitFor(t, 10*time.Second, "stats to show 400 records", func() bool { return sh.s.Stats().Records == 400 })
	if el := time.Since(start); el < 1500*time.Millisecond {
		t.Fatalf("rate cap of %d B/s not applied: %d bytes in %v", rate, size, el)
	}
	waitFor(t, 10*time.Second, "lag 0", func() bool { st := sh.s.Stats(); return st.LagRecords == 0 && st.CursorAge == 0 })

	reg := prometheus.NewRegistry()
	reg.MustRegister(sh.s.Collector())
	srv := httptest.NewServer(daemon.Handler(reg, sh.s.Routes, sh.s.Ready))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	code, body := get("/metrics")
	for _, line := range []string{
		`mercury_shipper_records_total{stream="spans"} 400`,
		`mercury_shipper_lag_records{stream="spans"} 0`,
		`mercury_shipper_skipped_segments_total{stream="spans"} 0`,
		`mercury_shipper_skipped_blocks_total{stream="spans"} 0`,
		`mercury_shipper_skipped_bytes_total{stream="spans"} 0`,
		`mercury_shipper_skipped_records_total{stream="spans"} 0`,
		`mercury_shipper_segments{stream="spans"} 1`,
		`mercury_shipper_bytes_total{stream="spans"} `,
		`mercury_shipper_send_errors_total{stream="spans"} 0`,
		`mercury_shipper_cursor_age_seconds{stream="spans"} 0`,
	} {
		if code != 200 || !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if code, body := get("/api/v1/ship/stats"); code != 200 || !strings.Contains(body, `"shipper_records":400`) || !strings.Contains(body, `"shipper_skipped_blocks":0`) {
		t.Errorf("/api/v1/ship/stats %d %s", code, body)
	}
	if sh.s.Stats().Bytes != size {
		t.Errorf("bytes %d, want %d", sh.s.Stats().Bytes, size)
	}
}
