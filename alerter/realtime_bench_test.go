package alerter

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
)

// BenchmarkRealtimeHandle is the real-time path's cost per event, without the broker: decode,
// rule lookup, signature, convergence, and (amortized) the batch's flush to the embedded
// store: events, counts and partition state. The mix: 20 signatures from 200 hosts, a batch
// of 1,000 events flushed at once, as the consumer does; most events fold into a window.
func BenchmarkRealtimeHandle(b *testing.B) {
	s := openStore(b)
	now := &wall{t: t0}
	a, err := New(Config{Telemetry: daemon.Telemetry{Logger: quiet()}, Bus: bus.Config{Brokers: []string{"127.0.0.1:1"}}, Store: s, NoPublish: true, Now: now.Now,
		DefaultReceivers: []string{"log"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.reloadRules(b.Context()); err != nil {
		b.Fatal(err)
	}
	rt := newRealtime(a, bus.TopicEvents)
	msgs := make([]kafka.Message, 4096)
	for i := range msgs {
		ev := exception(t0, fmt.Sprintf("pay-%03d", i%200), fmt.Sprintf("*pay.Error%d", i%20), fmt.Sprintf("charge order %d failed", i))
		msgs[i] = eventMsg(b, 0, 0, ev)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m := msgs[i%len(msgs)]
		m.Offset = int64(i)
		if err := rt.handle(b.Context(), m); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			now.Advance(time.Second)
			if err := flushAll(b.Context(), rt); err != nil {
				b.Fatal(err)
			}
		}
	}
}
