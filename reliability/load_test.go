package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/schemas"
)

// spanKey is a span's identity in the trace store: trace id + span id.
type spanKey [24]byte

func keyOf(t schemas.TraceID, s schemas.SpanID) (k spanKey) {
	copy(k[:16], t[:])
	copy(k[16:], s[:])
	return k
}

// service is one instrumented service: an agent with its spool disk, and what it sent.
type service struct {
	name    string
	agent   *agent.Agent
	disk    *disk
	spool   string
	ended   []spanKey      // sampled spans handed to End
	bursts  map[string]int // exception events emitted per burst name
	burstAt []time.Duration
	// slowest is the longest a request's two Start…End took: stalled or full, the disk must
	// never hold the service up (reported, not asserted: a loaded machine has pauses too).
	slowest time.Duration
}

// services are the drill's: payment samples half its traces, so weights are exercised.
var serviceNames = []string{"checkout", "payment", "stock"}

func newService(dir, name string, burstAt []time.Duration) (*service, error) {
	s := &service{name: name, disk: &disk{}, spool: filepath.Join(dir, "spool-"+name), bursts: map[string]int{}, burstAt: burstAt}
	rate := 1.0
	if name == "payment" {
		rate = 0.5
	}
	a, err := agent.New(agent.Config{Service: name, Domain: "shop", Host: name + "-1", SpoolDir: s.spool, SampleRate: rate,
		HeartbeatInterval: time.Second, FlushInterval: 100 * time.Millisecond, SpoolOpenFile: s.disk.open})
	if err != nil {
		return nil, err
	}
	s.agent = a
	return s, nil
}

// run sends requests (a server span with a client call under it) at rate spans/s until
// spans have been ended, and the service's exception bursts at their times.
func (s *service) run(ctx context.Context, rng *rand.Rand, spans int, rate float64, start time.Time) {
	ops := []string{"GET /cart/{id}", "POST /order", "GET /item/{id}", "POST /pay"}
	peers := []string{"orders-db", "cache", "bank"}
	burst := 0
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	sent := 0 // spans attempted, sampled or not, to keep the pace independent of sampling
	for len(s.ended) < spans {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		elapsed := time.Since(start)
		for burst < len(s.burstAt) && elapsed >= s.burstAt[burst] {
			s.emitBurst(fmt.Sprintf("DrillError%s%02d", s.name, burst))
			burst++
		}
		for due := int(rate*elapsed.Seconds()) - sent; due > 0 && len(s.ended) < spans; due -= 2 {
			sent += 2
			began := time.Now()
			ctx, root := s.agent.Start(context.Background(), ops[rng.IntN(len(ops))], agent.KindServer, agent.CategoryCustom)
			_, call := s.agent.Start(ctx, "HTTP POST", agent.KindClient, agent.CategoryCustom)
			call.SetPeer(peers[rng.IntN(len(peers))])
			if rng.IntN(40) == 0 {
				call.SetStatus(schemas.StatusError, 503)
				root.SetStatus(schemas.StatusError, 500)
			}
			call.End()
			root.End()
			s.slowest = max(s.slowest, time.Since(began))
			if root.Sampled() {
				s.ended = append(s.ended, keyOf(call.Context().TraceID, call.Context().SpanID),
					keyOf(root.Context().TraceID, root.Context().SpanID))
			}
		}
	}
}

// emitBurst sends five identical exceptions at once: one signature, one convergence window,
// so exactly one alert must count them all. Their "seq" tells copies (a shipper resending
// after a kill) from distinct events.
func (s *service) emitBurst(name string) {
	for i := range 5 {
		s.agent.Emit(agent.Event{Type: schemas.EventException, Name: name, Message: "drill failure",
			Operation: "POST /order", Stack: "reliability.burst\n\treliability/load_test.go:1",
			Attributes: map[string]string{"seq": strconv.Itoa(i)}})
		s.bursts[name]++
	}
}

// dropped is everything the agent counted as lost, spans and events together.
func (s *service) dropped() (n int64, by map[string]int64) {
	by = s.agent.Stats().Dropped
	for _, v := range by {
		n += v
	}
	return n, by
}
