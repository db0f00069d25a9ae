package bus_test

import (
	"flag"
	"testing"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/bus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFlagsAndSASL(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr bool
	}{
		{[]string{"--brokers", "a:9092, b:9092"}, false},
		{[]string{"--brokers", ""}, true},
		{[]string{"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", "u"}, false},
		{[]string{"--sasl-mechanism", "GSSAPI"}, true},
		{[]string{"--tls", "--tls-ca", "/nonexistent"}, true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f := bus.RegisterFlags(fs, "127.0.0.1:9092")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		c, err := f.Config()
		if (err != nil) != tc.wantErr {
			t.Errorf("%v: err %v", tc.args, err)
		}
		if err == nil && len(c.Brokers) == 0 {
			t.Errorf("%v: no brokers", tc.args)
		}
	}
	if _, err := (bus.Config{Brokers: []string{"x:1"}, SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: "p"}).Transport(); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.ParseCompression("brotli"); err == nil {
		t.Fatal("unknown compression accepted")
	}
}
