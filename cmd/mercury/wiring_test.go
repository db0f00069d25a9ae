package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/testproc"
	"github.com/mercury-apm/mercury/query/traces"
	"github.com/mercury-apm/mercury/schemas"
	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/esstore/esfake"
	"github.com/mercury-apm/mercury/storage/hbaserest/hbasefake"
)

// TestMain lets a test run the binary's own main in a subprocess: the distributed wiring is
// tested through exactly the code path `mercury collector` and `mercury query` take.
func TestMain(m *testing.M) {
	if os.Getenv("MERCURY_CMD_CHILD") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// daemonProcess runs `mercury args...` and stops it with SIGTERM at the end of the test,
// which must end it with status 0.
func daemonProcess(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MERCURY_CMD_CHILD=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("mercury %s: %v after SIGTERM\n%s", args[0], err, out.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("mercury %s did not stop on SIGTERM\n%s", args[0], out.String())
		}
	})
}

func get(t *testing.T, url string, out any) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
	}
	return resp.StatusCode, string(body)
}

// TestDistributedWiring: `mercury collector`, `mercury alerter` and `mercury query` as
// separate processes on the embedded broker, with the index in Elasticsearch and the rows
// and the alert store in HBase (both the in-test servers): a trace produced to mercury.spans
// is found by business key through the query process, an exception produced to
// mercury.events is on the query process's alert board, and /readyz turns 503 while HBase
// refuses writes, then recovers.
func TestDistributedWiring(t *testing.T) {
	es, hb := esfake.New(), hbasefake.New()
	defer es.Close()
	defer hb.Close()
	b, err := broker.New(context.Background(), broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	colAddr, qAddr, alAddr := testproc.FreeAddr(t), testproc.FreeAddr(t), testproc.FreeAddr(t)
	stores := []string{"--brokers", b.Addr(), "--es", es.URL, "--hbase", hb.URL}
	daemonProcess(t, append([]string{"collector", "--http", colAddr, "--batch-wait", "20ms"}, stores...)...)
	daemonProcess(t, append([]string{"query", "--http", qAddr, "--data", t.TempDir()}, stores...)...)
	daemonProcess(t, "alerter", "--http", alAddr, "--brokers", b.Addr(), "--hbase", hb.URL, "--data", t.TempDir())
	for _, addr := range []string{colAddr, qAddr, alAddr} {
		testproc.Eventually(t, addr+" ready", 30*time.Second, func() (bool, string) {
			code, body := get(t, "http://"+addr+"/readyz", nil)
			return code == 200, body
		})
	}

	w, err := bus.NewWriter(bus.Config{Brokers: []string{b.Addr()}}, bus.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	send := func(order string, tid schemas.TraceID) {
		t.Helper()
		now := time.Now()
		var msgs []kafka.Message
		for i, svc := range []string{"api", "order", "payment"} {
			sp := schemas.Span{TraceID: tid, SpanID: schemas.SpanID{byte(i + 1)}, ParentSpanID: schemas.SpanID{byte(i)}, Domain: "shop",
				Service: svc, Operation: "POST /x", Kind: schemas.KindServer, StartUnixNano: now.Add(time.Duration(i) * time.Millisecond).UnixNano(),
				DurationNano: int64(time.Millisecond), Status: schemas.StatusOK, SampleRate: 1, BusinessKeys: []schemas.KV{{Key: "order_id", Value: order}}}
			v, err := schemas.Marshal(&sp)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, kafka.Message{Topic: bus.TopicSpans, Key: tid[:], Value: v})
		}
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
	}
	found := func(order string) func() (bool, string) {
		return func() (bool, string) {
			var res traces.SearchResult
			code, body := get(t, "http://"+qAddr+"/api/v1/traces?bk=order_id:"+order, &res)
			return code == 200 && len(res.Traces) == 1 && res.Traces[0].SpanCount == 3, body
		}
	}
	send("4242", schemas.TraceID{0x42, 1})
	testproc.Eventually(t, "trace 4242 through the query process", 30*time.Second, found("4242"))
	var tr traces.Trace
	if code, body := get(t, "http://"+qAddr+"/api/v1/traces/"+schemas.TraceID{0x42, 1}.String(), &tr); code != 200 || tr.SpanCount != 3 {
		t.Fatalf("trace by id: %d %s", code, body)
	}

	// An exception event: the alerter fires an alert into HBase, the query process shows it.
	ev := schemas.Event{TimeUnixNano: time.Now().UnixNano(), Domain: "shop", Service: "payment", Host: "pay-1",
		Type: schemas.EventException, Name: "CardDeclined", Message: "charge order 4242 failed",
		Stack: "github.com/shop/pay.(*Service).Charge\n\t/src/pay/service.go:42\n", Operation: "POST /pay",
		TraceID: schemas.TraceID{0x42, 1}}
	v, err := schemas.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteMessages(context.Background(), kafka.Message{Topic: bus.TopicEvents, Key: []byte(ev.Service), Value: v}); err != nil {
		t.Fatal(err)
	}
	testproc.Eventually(t, "the alert on the query process's board", 30*time.Second, func() (bool, string) {
		var board struct {
			Alerts []alertstore.Alert `json:"alerts"`
		}
		code, body := get(t, "http://"+qAddr+"/api/v1/alerts?service=payment", &board)
		return code == 200 && len(board.Alerts) == 1 && board.Alerts[0].Kind == alertstore.KindEvent &&
			board.Alerts[0].State == alertstore.StateFiring && slices.Contains(board.Alerts[0].TraceIDs, ev.TraceID.String()), body
	})

	// HBase refuses row writes for a while: the collector stops being ready, keeps the
	// batch, and writes it once HBase is back.
	hb.Fail(http.MethodPut, "put", http.StatusServiceUnavailable, 1000)
	send("4343", schemas.TraceID{0x43, 1})
	testproc.Eventually(t, "collector not ready while HBase fails", 30*time.Second, func() (bool, string) {
		code, body := get(t, "http://"+colAddr+"/readyz", nil)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "store"), fmt.Sprint(code, " ", body)
	})
	hb.Heal()
	testproc.Eventually(t, "trace 4343 after HBase recovered", 60*time.Second, found("4343"))
	testproc.Eventually(t, "collector ready again", 30*time.Second, func() (bool, string) {
		code, body := get(t, "http://"+colAddr+"/readyz", nil)
		return code == 200, body
	})
}
