package ship

import (
	"context"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
)

// The in-process shipper ships the agent's spool and its figures arrive in the agent's
// heartbeats on mercury.heartbeats.
func TestForAgentReportsInHeartbeats(t *testing.T) {
	br := startBroker(t, t.TempDir(), "")
	defer br.Close()
	a, err := agent.New(agent.Config{Service: "order", SpoolDir: t.TempDir(), HeartbeatInterval: 20 * time.Millisecond, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	s, err := ForAgent(a, Config{Bus: bus.Config{Brokers: []string{br.Addr()}}, Logger: quietLog(), Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	_, span := a.StartSpan(context.Background(), "op")
	span.End()

	r, err := bus.NewReader(bus.Config{Brokers: []string{br.Addr()}}, bus.ReaderConfig{Topic: bus.TopicHeartbeats, GroupID: "hb-check"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := r.FetchMessage(fctx)
		fcancel()
		if err != nil {
			continue
		}
		var hb schemas.Heartbeat
		if err := schemas.Unmarshal(m.Value, &hb); err != nil {
			t.Fatal(err)
		}
		if hb.Stats["shipper_records"] > 0 {
			if string(m.Key) != "order/"+hb.Host {
				t.Fatalf("heartbeat key %q", m.Key)
			}
			return
		}
	}
	select {
	case err := <-done:
		t.Fatalf("no heartbeat carried the shipper's figures; the shipper stopped: %v", err)
	default:
	}
	t.Fatalf("no heartbeat carried the shipper's figures; shipper %+v, agent %+v, reader %+v", s.Stats(), a.Stats(), r.Stats())
}
