package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mercury.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFileUnderFlags: a section's keys set the command's flags, ${VAR:-default} is
// expanded, lists become comma lists, and the command line wins.
func TestConfigFileUnderFlags(t *testing.T) {
	t.Setenv("MERCURY_TEST_ES", "http://es:9200")
	p := writeFile(t, `
collector:
  brokers: [k1:9092, k2:9092]
  es: ${MERCURY_TEST_ES}
  hbase: ${MERCURY_TEST_UNSET_HBASE:-http://hbase:8080}
  batch: 2000
  http: 127.0.0.1:1
query:
  admin-token: from-file
`)
	fs := flagSets["collector"]()
	if err := parseFlags(fs, []string{"--config-file", p, "--http", "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if err := withConfigFile(fs); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"brokers": "k1:9092,k2:9092", "es": "http://es:9200", "hbase": "http://hbase:8080", "batch": "2000", "http": "127.0.0.1:2"} {
		if got := fs.Lookup(key).Value.String(); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

// TestConfigFileErrors name the file and the key.
func TestConfigFileErrors(t *testing.T) {
	for text, want := range map[string]string{
		"collector:\n  bathc: 10\n":           `unknown key "bathc" in section "collector"`,
		"collector:\n  batch: many\n":         `collector.batch`,
		"collector:\n  es: ${NOPE_NOT_SET}\n": "NOPE_NOT_SET is not set",
		"colector:\n  batch: 10\n":            `unknown section "colector"`,
		"collector:\n  batch: {a: 1}\n":       "want a value or a list",
		"collector: [\n":                      "mercury.yaml",
		"query:\n  config-file: other.yaml\n": `unknown key "config-file"`,
	} {
		p := writeFile(t, text)
		c, err := loadConfig(p)
		if err == nil {
			err = c.check()
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%q: %v (want %q and the file name)", text, err, want)
		}
	}
}

// TestConfigDefaultsAreValidAndDocumented: `mercury config defaults` is itself a valid file,
// and docs/config.md holds exactly what it prints (regenerate with
// `go run ./cmd/mercury config defaults`).
func TestConfigDefaultsAreValidAndDocumented(t *testing.T) {
	var b strings.Builder
	if err := printDefaults(&b); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(writeFile(t, b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+b.String()+"```") {
		t.Fatal("docs/config.md is out of date: paste the output of `go run ./cmd/mercury config defaults` into its yaml block")
	}
	out, code := mercury(t, "config", "check", writeFile(t, "collector:\n  batch: 10\n"))
	if code != 0 || !strings.Contains(out, ": ok") {
		t.Fatalf("config check: %d %s", code, out)
	}
	if out, code := mercury(t, "config", "check", writeFile(t, "collector:\n  batc: 10\n")); code != 1 || !strings.Contains(out, "batc") {
		t.Fatalf("config check of a bad file: %d %s", code, out)
	}
}
