package broker_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
)

// childBroker, when this test binary is re-executed with MERCURY_BROKER_CHILD=dir, runs a
// broker on dir, prints its address and waits to be killed.
func childBroker() {
	time.AfterFunc(10*time.Minute, func() { os.Exit(3) }) // never outlive a stuck parent
	dir := os.Getenv("MERCURY_BROKER_CHILD")
	b, err := broker.New(context.Background(), broker.Config{DataDir: dir, SyncWrites: os.Getenv("MERCURY_BROKER_SYNC") != ""})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("addr", b.Addr())
	select {}
}

// TestKilledBrokerKeepsAcknowledgedData: the broker process is killed with SIGKILL (no Close,
// no final save) after acknowledging writes and a group commit; a broker started on the same
// directory still has the topics, the records and the committed offset. Run with and without
// SyncWrites: a process kill leaves the page cache alone, so both keep everything (only a
// machine crash tells them apart).
func TestKilledBrokerKeepsAcknowledgedData(t *testing.T) {
	for _, syncW := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", syncW), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), "MERCURY_BROKER_CHILD="+dir)
			if syncW {
				cmd.Env = append(cmd.Env, "MERCURY_BROKER_SYNC=1")
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "addr ") {
				t.Fatalf("child broker: %q %v", line, err)
			}
			addr := strings.TrimSpace(strings.TrimPrefix(line, "addr "))
			cfg := bus.Config{Brokers: []string{addr}}
			w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicEvents})
			if err != nil {
				t.Fatal(err)
			}
			var msgs []kafka.Message
			for i := range 10 {
				msgs = append(msgs, kafka.Message{Key: []byte("svc"), Value: fmt.Appendf(nil, "m%02d", i)})
			}
			if err := w.WriteMessages(context.Background(), msgs...); err != nil {
				t.Fatal(err)
			}
			bus.CloseWriter(w)
			if got := consume(t, addr, "crash", 4); got[3] != "m03" {
				t.Fatalf("first read %v", got)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()

			b := start(t, dir, addr)
			defer b.Close()
			if got := topics(t, addr); got[bus.TopicSpans] != 6 {
				t.Fatalf("topics after kill: %v", got)
			}
			rest := consume(t, addr, "crash", 6)
			if rest[0] != "m04" || rest[5] != "m09" {
				t.Fatalf("after kill the group read %v, want m04…m09", rest)
			}
		})
	}
}
