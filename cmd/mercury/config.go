package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// A configuration file has one section per command, named like the command, whose keys are
// the command's flag names:
//
//	collector:
//	  brokers: ${KAFKA:-127.0.0.1:9092}
//	  es: http://es:9200
//	  batch: 2000
//
// Every command reads the file given by --config-file (or $MERCURY_CONFIG); flags on the
// command line override it. ${NAME} and ${NAME:-default} are expanded from the environment in
// values; an unknown section or key is an error naming it and the file. `mercury config
// check FILE` checks a file against every command; `mercury config defaults` prints every
// command's keys with their defaults, the one place they are documented.

// configFlag is the flag every daemon command takes.
const configFlag = "config-file"

// adminTokenEnv holds the admin token of every daemon with admin endpoints (kept off the
// command line and out of files).
const adminTokenEnv = "MERCURY_ADMIN_TOKEN"

// flagSets builds each command's flag set without running it, for checking files and
// printing defaults: the commands register their flags in setup functions that runX calls.
var flagSets = map[string]func() *flag.FlagSet{}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expand replaces ${NAME} and ${NAME:-default}; a reference to an unset variable without a
// default is an error (a silently empty broker list helps nobody).
func expand(s string) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v, ok := os.LookupEnv(m[1]); ok && (v != "" || m[2] == "") {
			return v
		}
		if m[2] != "" {
			return m[3]
		}
		missing = append(missing, m[1])
		return ""
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set and has no default (${%s:-default})", strings.Join(missing, ", "), missing[0])
	}
	return out, nil
}

// configFile is a parsed file: section → key → value as a flag would take it.
type configFile struct {
	path     string
	sections map[string]map[string]string
}

// loadConfig reads and expands a configuration file.
func loadConfig(path string) (*configFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]map[string]yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &configFile{path: path, sections: map[string]map[string]string{}}
	for section, keys := range raw {
		c.sections[section] = map[string]string{}
		for key, node := range keys {
			v, err := scalar(&node)
			if err != nil {
				return nil, fmt.Errorf("%s: %s.%s (line %d): %w", path, section, key, node.Line, err)
			}
			if v, err = expand(v); err != nil {
				return nil, fmt.Errorf("%s: %s.%s (line %d): %w", path, section, key, node.Line, err)
			}
			c.sections[section][key] = v
		}
	}
	return c, nil
}

// scalar is a value as a flag takes it: a scalar as written, a list joined with commas.
func scalar(n *yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, nil
	case yaml.SequenceNode:
		var parts []string
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return "", errors.New("a list may hold only plain values")
			}
			parts = append(parts, item.Value)
		}
		return strings.Join(parts, ","), nil
	}
	return "", errors.New("want a value or a list of values")
}

// apply sets fs's flags from the command's section, except those set on the command line.
func (c *configFile) apply(fs *flag.FlagSet, set map[string]bool) error {
	section, ok := c.sections[fs.Name()]
	if !ok {
		return nil
	}
	for _, key := range slices.Sorted(maps.Keys(section)) {
		f := fs.Lookup(key)
		if f == nil || key == configFlag {
			return fmt.Errorf("%s: unknown key %q in section %q (see `mercury config defaults`)", c.path, key, fs.Name())
		}
		if set[key] {
			continue // the command line wins
		}
		if err := fs.Set(key, section[key]); err != nil {
			return fmt.Errorf("%s: %s.%s: %w", c.path, fs.Name(), key, err)
		}
	}
	return nil
}

// check reports every unknown section and key, and every value its flag refuses.
func (c *configFile) check() error {
	var errs []error
	for _, section := range slices.Sorted(maps.Keys(c.sections)) {
		mk, ok := flagSets[section]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown section %q (commands: %s)", c.path, section, strings.Join(slices.Sorted(maps.Keys(flagSets)), ", ")))
			continue
		}
		if err := c.apply(mk(), map[string]bool{}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// withConfigFile loads --config-file (or $MERCURY_CONFIG) after the command line is parsed.
func withConfigFile(fs *flag.FlagSet) error {
	path := ""
	if f := fs.Lookup(configFlag); f != nil {
		path = f.Value.String()
	}
	if path == "" {
		return nil
	}
	c, err := loadConfig(path)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return c.apply(fs, set)
}

func registerConfigFlag(fs *flag.FlagSet) {
	if fs.Lookup(configFlag) == nil {
		fs.String(configFlag, os.Getenv("MERCURY_CONFIG"), "YAML file with a section per command (keys are flag names; default $MERCURY_CONFIG); flags override it")
	}
}

// runConfig: mercury config check FILE | mercury config defaults.
func runConfig(_ context.Context, args []string) error {
	switch {
	case len(args) == 2 && args[0] == "check":
		c, err := loadConfig(args[1])
		if err == nil {
			err = c.check()
		}
		if err != nil {
			return err
		}
		fmt.Printf("%s: ok\n", args[1])
		return nil
	case len(args) == 1 && args[0] == "defaults":
		return printDefaults(os.Stdout)
	}
	return errors.New("usage: mercury config check FILE | mercury config defaults")
}

// printDefaults writes a configuration file holding every command's keys at their defaults,
// each with its flag's help as a comment.
func printDefaults(w io.Writer) error {
	fmt.Fprintln(w, "# Every key of every command, at its default (`mercury config defaults`).")
	for _, name := range slices.Sorted(maps.Keys(flagSets)) {
		fmt.Fprintf(w, "\n%s:\n", name)
		fs := flagSets[name]()
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == configFlag {
				return
			}
			fmt.Fprintf(w, "  # %s\n  %s: %s\n", strings.ReplaceAll(f.Usage, "\n", " "), f.Name, yamlValue(f.DefValue))
		})
	}
	return nil
}

func yamlValue(s string) string {
	if s == "" {
		return `""`
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil || s == "true" || s == "false" {
		return s
	}
	b, _ := yaml.Marshal(s)
	return strings.TrimSpace(string(b))
}
