package main

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/testproc"
	"github.com/mercury-apm/mercury/schemas"
)

// TestDemoWithShipSidecar: `mercury demo` as its own process writes one spool per service,
// and a `mercury ship` process on the api spool (the compose file's sidecar) puts the demo's
// spans on mercury.spans, where they arrive as api spans carrying the order id sent to the
// api address the demo was told to listen on.
func TestDemoWithShipSidecar(t *testing.T) {
	b, err := broker.New(context.Background(), broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	spool := t.TempDir()
	demoAddr, apiAddr, shipAddr := testproc.FreeAddr(t), testproc.FreeAddr(t), testproc.FreeAddr(t)
	daemonProcess(t, "demo", "--spool", spool, "--api", apiAddr, "--http", demoAddr, "--every", "-1s")
	daemonProcess(t, "ship", "--spool", filepath.Join(spool, "api"), "--brokers", b.Addr(), "--http", shipAddr, "--linger", "5ms")
	for _, addr := range []string{demoAddr, shipAddr} {
		testproc.Eventually(t, addr+" ready", 30*time.Second, func() (bool, string) {
			code, body := get(t, "http://"+addr+"/readyz", nil)
			return code == 200, body
		})
	}
	const order = "987654321"
	resp, err := http.Post("http://"+apiAddr+"/orders/"+order, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusInternalServerError { // 5 % of payments are declined
		t.Fatalf("POST /orders: status %d", resp.StatusCode)
	}

	r, err := bus.NewReader(bus.Config{Brokers: []string{b.Addr()}}, bus.ReaderConfig{Topic: bus.TopicSpans, GroupID: "demo-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("no api span with order_id %s on %s: %v", order, bus.TopicSpans, err)
		}
		var s schemas.Span
		if err := schemas.Unmarshal(m.Value, &s); err != nil {
			t.Fatal(err)
		}
		if s.Service == "api" && slices.Contains(s.BusinessKeys, schemas.KV{Key: "order_id", Value: order}) {
			return
		}
	}
}

// TestTopicsCreatesWithCounts: `mercury topics` on a cluster without Mercury's topics creates
// all of them with the default counts or the --partitions overrides, and a second run with
// other counts keeps the existing topics as they are.
func TestTopicsCreatesWithCounts(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	if out, code := mercury(t, "topics", "--brokers", addr, "--partitions", "mercury.spans=4,mercury.events=2"); code != 0 {
		t.Fatalf("status %d\n%s", code, out)
	}
	want := map[string]int{}
	for _, topic := range bus.Topics {
		want[topic] = bus.DefaultPartitions(topic)
	}
	want[bus.TopicSpans], want[bus.TopicEvents] = 4, 2
	check := func() {
		t.Helper()
		cl := &kafka.Client{Addr: kafka.TCP(addr)}
		md, err := cl.Metadata(context.Background(), &kafka.MetadataRequest{Topics: bus.Topics})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, tp := range md.Topics {
			if tp.Error == nil {
				got[tp.Name] = len(tp.Partitions)
			}
		}
		for topic, n := range want {
			if got[topic] != n {
				t.Errorf("%s: %d partitions, want %d", topic, got[topic], n)
			}
		}
	}
	check()
	if out, code := mercury(t, "topics", "--brokers", addr, "--partitions", "mercury.spans=9"); code != 0 {
		t.Fatalf("second run: status %d\n%s", code, out)
	}
	check()
}

func TestTopicsRefusesBadPartitions(t *testing.T) {
	for arg, want := range map[string]string{
		"mercury.spans":      "not topic=count",
		"mercury.spam=3":     `"mercury.spam" is not a Mercury topic`,
		"mercury.spans=0":    `"0" is not a partition count`,
		"mercury.spans=many": `"many" is not a partition count`,
	} {
		_, err := parseTopicPartitions(arg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", arg, err, want)
		}
	}
	got, err := parseTopicPartitions("mercury.spans=12, mercury.metrics.20s=" + strconv.Itoa(12))
	if err != nil || got[bus.TopicSpans] != 12 || got[bus.TopicMetrics20s] != 12 || len(got) != 2 {
		t.Errorf("got %v, %v", got, err)
	}
}
