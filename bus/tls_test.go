package bus_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mercury-apm/mercury/bus"
)

// TestTLSFlagsAgainstBroker: a broker with a self-signed certificate is reached through the
// --tls-ca flag, and refused without it.
func TestTLSFlagsAgainstBroker(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mercury-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, bus.TopicAlerts),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.ListenAddrs()[0]
	write := func(args ...string) error {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f := bus.RegisterFlags(fs, addr)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.Config()
		if err != nil {
			t.Fatal(err)
		}
		// An unknown CA fails the handshake at once, so the deadlines only bound a loaded
		// machine's success.
		cfg.DialTimeout = 10 * time.Second
		w, err := bus.NewWriter(cfg, bus.WriterConfig{Topic: bus.TopicAlerts, WriteTimeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer bus.CloseWriter(w)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return w.WriteMessages(ctx, kafka.Message{Value: []byte("x")})
	}
	if err := write("--tls-ca", ca); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if err := write("--tls"); err == nil {
		t.Fatal("an unknown CA was accepted")
	}
}
