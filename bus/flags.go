package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
)

// Flags binds the connection flags every daemon takes (--brokers, TLS, SASL) to a FlagSet, so
// that moving from the embedded broker to a real cluster is a flag change everywhere.
type Flags struct {
	brokers, clientID                    string
	tlsOn, tlsInsecure                   bool
	tlsCA, tlsCert, tlsKey               string
	saslMechanism, saslUser, saslPassEnv string
}

// RegisterFlags adds the flags to fs; defaultBrokers is the --brokers default.
func RegisterFlags(fs *flag.FlagSet, defaultBrokers string) *Flags {
	f := &Flags{}
	fs.StringVar(&f.brokers, "brokers", defaultBrokers, "comma-separated Kafka bootstrap brokers (host:port)")
	fs.StringVar(&f.clientID, "client-id", "mercury", "Kafka client id")
	fs.BoolVar(&f.tlsOn, "tls", false, "connect with TLS")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of CA certificates to trust (default: system pool)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM client certificate for mutual TLS")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM client key for mutual TLS")
	fs.BoolVar(&f.tlsInsecure, "tls-insecure-skip-verify", false, "do not verify the broker certificate (testing only)")
	fs.StringVar(&f.saslMechanism, "sasl-mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: none)")
	fs.StringVar(&f.saslUser, "sasl-user", "", "SASL user name")
	fs.StringVar(&f.saslPassEnv, "sasl-password-env", "MERCURY_SASL_PASSWORD", "environment variable holding the SASL password (kept off the command line)")
	return f
}

// Config builds the connection config from the parsed flags.
func (f *Flags) Config() (Config, error) {
	c := Config{Brokers: ParseBrokers(f.brokers), ClientID: f.clientID}
	if len(c.Brokers) == 0 {
		return c, errors.New("--brokers is empty")
	}
	if f.tlsOn || f.tlsCA != "" || f.tlsCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.tlsInsecure}
		if f.tlsCA != "" {
			pem, err := os.ReadFile(f.tlsCA)
			if err != nil {
				return c, fmt.Errorf("--tls-ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return c, fmt.Errorf("--tls-ca %s: no certificates found", f.tlsCA)
			}
		}
		if f.tlsCert != "" || f.tlsKey != "" {
			cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
			if err != nil {
				return c, fmt.Errorf("--tls-cert/--tls-key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		c.TLS = tc
	}
	if f.saslMechanism != "" {
		c.SASLMechanism, c.SASLUser, c.SASLPassword = f.saslMechanism, f.saslUser, os.Getenv(f.saslPassEnv)
	}
	return c, c.validate()
}
