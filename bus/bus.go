// Package bus is the one place where Mercury builds Kafka clients (segmentio/kafka-go): topic
// names and creation, writers, readers, the dead-letter helper and the fetch/process/commit loop.
//
// Every writer and reader gets its own kafka.Transport or kafka.Dialer. kafka-go's shared
// DefaultTransport keeps dead pooled connections after a broker restart in the same process
// (measured with the embedded broker), so sharing it would turn one restart into stuck clients.
package bus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Topics.
const (
	TopicSpans      = "mercury.spans"
	TopicEvents     = "mercury.events"
	TopicHeartbeats = "mercury.heartbeats"
	TopicMetrics20s = "mercury.metrics.20s"
	TopicMetrics1m  = "mercury.metrics.1m"
	TopicAlerts     = "mercury.alerts"
	TopicDLQ        = "mercury.dlq"
)

// Topics lists every Mercury topic.
var Topics = []string{TopicSpans, TopicEvents, TopicHeartbeats, TopicMetrics20s, TopicMetrics1m, TopicAlerts, TopicDLQ}

// DefaultPartitions is the partition count Mercury topics are created with. Spans carry most
// of the volume and their consumers (collector, aggregator phase 1) scale with partitions.
func DefaultPartitions(topic string) int {
	switch topic {
	case TopicSpans, TopicMetrics20s:
		return 6
	default:
		return 3
	}
}

// SASL mechanisms.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Config says how to reach the cluster. The zero value (plus Brokers) is a plaintext
// connection, which is what the embedded broker speaks.
type Config struct {
	Brokers  []string
	ClientID string      // defaults to "mercury"
	TLS      *tls.Config // nil: plaintext
	// SASL: Mechanism is one of the SASL* constants; empty disables SASL.
	SASLMechanism string
	SASLUser      string
	SASLPassword  string
	DialTimeout   time.Duration // defaults to 5 s
}

// ParseBrokers splits a comma-separated --brokers flag, dropping blanks.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func (c Config) validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("bus: no brokers configured")
	}
	_, err := c.mechanism()
	return err
}

func (c Config) clientID() string {
	if c.ClientID == "" {
		return "mercury"
	}
	return c.ClientID
}

func (c Config) dialTimeout() time.Duration {
	if c.DialTimeout <= 0 {
		return 5 * time.Second
	}
	return c.DialTimeout
}

func (c Config) mechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(c.SASLMechanism) {
	case "":
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: c.SASLUser, Password: c.SASLPassword}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, c.SASLUser, c.SASLPassword)
	case SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, c.SASLUser, c.SASLPassword)
	}
	return nil, fmt.Errorf("bus: unknown SASL mechanism %q (want %s, %s or %s)", c.SASLMechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
}

// Transport returns a fresh transport for writers and admin clients: never share one across
// clients (see the package comment).
func (c Config) Transport() (*kafka.Transport, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	mech, _ := c.mechanism()
	return &kafka.Transport{
		DialTimeout: c.dialTimeout(),
		ClientID:    c.clientID(),
		TLS:         c.TLS,
		SASL:        mech,
		// Metadata is cached per transport; a short TTL lets a writer notice a recreated
		// topic or a broker that came back without waiting the 6 s default.
		MetadataTTL: 2 * time.Second,
	}, nil
}

// Dialer returns a fresh dialer for readers (kafka-go readers dial through a Dialer, not a
// Transport).
func (c Config) Dialer() (*kafka.Dialer, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	mech, _ := c.mechanism()
	return &kafka.Dialer{
		ClientID:      c.clientID(),
		Timeout:       c.dialTimeout(),
		DualStack:     true,
		TLS:           c.TLS,
		SASLMechanism: mech,
	}, nil
}

// Client returns an admin/metadata client with its own transport.
func (c Config) Client() (*kafka.Client, error) {
	t, err := c.Transport()
	if err != nil {
		return nil, err
	}
	return &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: t, Timeout: 10 * time.Second}, nil
}

// Header returns the value of the first header named key.
func Header(m kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}
