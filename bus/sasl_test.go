package bus_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mercury-apm/mercury/bus"
)

// TestSASLAgainstBroker checks the SASL wiring end to end against kfake with authentication
// on: every mechanism Mercury offers writes and reads with the right password, and a wrong
// password is refused.
func TestSASLAgainstBroker(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser(bus.SASLPlain, "plain-user", "pw1"),
		kfake.Superuser(bus.SASLScramSHA256, "scram256", "pw2"),
		kfake.Superuser(bus.SASLScramSHA512, "scram512", "pw3"),
		kfake.SeedTopics(1, bus.TopicAlerts))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	for _, tc := range []struct {
		mech, user, pass string
		ok               bool
	}{
		{bus.SASLPlain, "plain-user", "pw1", true},
		{bus.SASLScramSHA256, "scram256", "pw2", true},
		{bus.SASLScramSHA512, "scram512", "pw3", true},
		{bus.SASLScramSHA256, "scram256", "wrong", false},
	} {
		t.Run(tc.mech+"/"+tc.pass, func(t *testing.T) {
			cfg := bus.Config{Brokers: []string{addr}, SASLMechanism: tc.mech, SASLUser: tc.user, SASLPassword: tc.pass}
			// Refusals come back at once, so the deadlines only bound a loaded machine's success.
			w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicAlerts, WriteTimeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer bus.CloseWriter(w)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = w.WriteMessages(ctx, kafka.Message{Key: []byte(tc.user), Value: []byte("x")})
			if (err == nil) != tc.ok {
				t.Fatalf("write with %s: %v", tc.mech, err)
			}
		})
	}
}

// TestRealKafka runs a write and a group read against a real cluster when MERCURY_TEST_KAFKA
// names its bootstrap brokers (comma-separated); the embedded broker covers it otherwise.
func TestRealKafka(t *testing.T) {
	brokers := bus.ParseBrokers(os.Getenv("MERCURY_TEST_KAFKA"))
	if len(brokers) == 0 {
		t.Skip("MERCURY_TEST_KAFKA not set; the embedded broker tests cover this path")
	}
	cfg := bus.Config{Brokers: brokers}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := bus.EnsureTopics(ctx, cfg, nil); err != nil {
		t.Fatal(err)
	}
	w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicAlerts})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.CloseWriter(w)
	mark := []byte(time.Now().Format(time.RFC3339Nano))
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("test"), Value: mark}); err != nil {
		t.Fatal(err)
	}
	r, err := bus.NewReader(cfg, bus.ReaderConfig{Topic: bus.TopicAlerts, GroupID: "mercury-test-" + string(mark)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Value) == string(mark) {
			if err := r.CommitMessages(ctx, m); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
}
