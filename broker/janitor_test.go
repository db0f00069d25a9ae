package broker_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/mercury-apm/mercury/broker"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/testproc"
)

// TestMemberDeadInJoinIsRemoved: a member that dies while its JoinGroup waits for the
// rebalance (a daemon killed a second after it started) is handed partitions by the
// leader and, in kfake, never expires; the broker's janitor removes it once it has been
// silent for its session plus rebalance timeout, and the live member gets every partition.
func TestMemberDeadInJoinIsRemoved(t *testing.T) {
	b, err := broker.New(context.Background(), broker.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := bus.Config{Brokers: []string{b.Addr()}}
	live, err := bus.NewConsumer(cfg, bus.ConsumerConfig{Topic: bus.TopicEvents, Group: "janitor", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- live.Run(ctx, func(context.Context, bus.Batch) error { return nil }) }()
	defer func() { cancel(); <-done }()
	all := bus.DefaultPartitions(bus.TopicEvents)
	assigned := func(want func(int) bool) func() (bool, string) {
		return func() (bool, string) { n := len(live.Assigned()); return want(n), fmt.Sprint(n, " partitions") }
	}
	testproc.Eventually(t, "the live member owns the topic", 30*time.Second, assigned(func(n int) bool { return n == all }))

	joinAndDie(t, b.Addr(), "janitor", bus.TopicEvents)
	testproc.Eventually(t, "the dead member was given partitions", 30*time.Second, assigned(func(n int) bool { return n > 0 && n < all }))
	testproc.Eventually(t, "the dead member was removed", 40*time.Second, assigned(func(n int) bool { return n == all }))
}

// joinAndDie joins group as a new member over a raw connection (JoinGroup v5: the first
// asks for a member id, the second joins with it) and closes the connection before the
// join completes.
func joinAndDie(t *testing.T, addr, group, topic string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	meta := (&kmsg.ConsumerMemberMetadata{Topics: []string{topic}}).AppendTo(nil)
	join := kmsg.NewPtrJoinGroupRequest()
	join.SetVersion(5)
	join.Group, join.ProtocolType = group, "consumer"
	join.SessionTimeoutMillis, join.RebalanceTimeoutMillis = 6000, 6000
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: meta}, {Name: "roundrobin", Metadata: meta}}
	write(t, conn, 1, join)
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.SetVersion(5)
	read(t, conn, resp)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != kerr.MemberIDRequired {
		t.Fatalf("first join: %v, want MEMBER_ID_REQUIRED", err)
	}
	join.MemberID = resp.MemberID
	write(t, conn, 2, join)
	time.Sleep(100 * time.Millisecond) // let the broker take the join in before the connection dies
}

// write sends req with a v1 request header (JoinGroup v5 is not a flexible version).
func write(t *testing.T, conn net.Conn, corr int32, req kmsg.Request) {
	t.Helper()
	msg := binary.BigEndian.AppendUint16(make([]byte, 4), uint16(req.Key()))
	msg = binary.BigEndian.AppendUint16(msg, uint16(req.GetVersion()))
	msg = binary.BigEndian.AppendUint32(msg, uint32(corr))
	msg = binary.BigEndian.AppendUint16(msg, uint16(len("dead")))
	msg = append(msg, "dead"...)
	msg = req.AppendTo(msg)
	binary.BigEndian.PutUint32(msg, uint32(len(msg)-4))
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
}

// read reads one response (size, correlation id, body) into resp.
func read(t *testing.T, conn net.Conn, resp kmsg.Response) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(conn, body); err != nil {
		t.Fatal(err)
	}
	if err := resp.ReadFrom(body[4:]); err != nil {
		t.Fatal(err)
	}
}
