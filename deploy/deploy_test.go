// Package deploy_test checks the deployment files (docker-compose.yml, deploy/k8s, the mounted
// configuration) against the real mercury binary: every container's subcommand and flags,
// merged with the configuration file it reads, must pass `mercury config check`, and its
// health checks must probe the address the daemon listens on, and the aggregator instances
// of a phase must own disjoint partition sets covering its topic. A renamed flag or section
// fails here instead of in a crash-looping container.
package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/gateway"
	"github.com/mercury-apm/mercury/internal/testproc"
)

// configInImage is the Dockerfile's MERCURY_CONFIG, the file every daemon reads.
const configInImage = "/etc/mercury/mercury.yaml"

var mercuryBin string

func TestMain(m *testing.M) { os.Exit(testproc.RunWithMercury(m, &mercuryBin)) }

// container is one Mercury process of a deployment, whatever file it comes from.
type container struct {
	where   string            // for messages: file and service or object/container
	argv    []string          // after the image's entrypoint (`mercury`): subcommand and flags
	mounts  map[string]string // path in the container → file in the repository
	healthy []string          // ports its health checks or probes reach, as numbers
}

// mercuryConfig is the repository file the container reads as $MERCURY_CONFIG: the one
// mounted there, else the copy the Dockerfile puts in the image.
func (c container) mercuryConfig() string {
	if f, ok := c.mounts[configInImage]; ok {
		return f
	}
	return "mercury.yaml"
}

// settings splits argv into the subcommand and its flags. Flags must be written
// --name=value (or a bare --name for a boolean) so that they can be checked without
// guessing which flags take values; daemons take no positional arguments.
func settings(argv []string) (string, map[string]string, error) {
	if len(argv) == 0 {
		return "", nil, errors.New("no subcommand")
	}
	flags := map[string]string{}
	for _, a := range argv[1:] {
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name == "" {
			return "", nil, fmt.Errorf("argument %q: daemons take only flags, written --name=value", a)
		}
		if !ok {
			value = "true"
		}
		if name == "config-file" {
			return "", nil, fmt.Errorf("--config-file: the image reads %s ($MERCURY_CONFIG); mount the file there", configInImage)
		}
		flags[name] = value
	}
	return argv[0], flags, nil
}

// checkContainer runs `mercury config check` on the container's configuration file with its
// command line laid over its section, as the daemon merges them at start (flags win), and
// checks that its health checks reach the address the daemon serves them on. It returns the
// subcommand and its settings (file and flags merged) when they pass.
func checkContainer(t *testing.T, c container) (string, map[string]any, bool) {
	t.Helper()
	cmd, flags, err := settings(c.argv)
	if err != nil {
		t.Errorf("%s: %v", c.where, err)
		return "", nil, false
	}
	file, err := readSettings(c.mercuryConfig())
	if err != nil {
		t.Errorf("%s: %v", c.where, err)
		return "", nil, false
	}
	if file[cmd] == nil {
		file[cmd] = map[string]any{}
	}
	for k, v := range flags {
		file[cmd][k] = v
	}
	merged, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "merged.yaml")
	if err := os.WriteFile(path, merged, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mercuryBin, "config", "check", path).CombinedOutput(); err != nil {
		t.Errorf("%s: `mercury %s` with %s does not pass `mercury config check`: %v\n%s",
			c.where, strings.Join(c.argv, " "), c.mercuryConfig(), err, out)
		return "", nil, false
	}

	serves, err := healthPort(cmd, file[cmd], c.mounts)
	if err != nil {
		t.Errorf("%s: %v", c.where, err)
		return "", nil, false
	}
	for _, p := range c.healthy {
		if serves == "" {
			t.Errorf("%s: a health check probes port %s but `mercury %s` has no http address", c.where, p, cmd)
		} else if p != serves {
			t.Errorf("%s: a health check probes port %s but `mercury %s` serves /healthz on port %s", c.where, p, cmd, serves)
		}
	}
	return cmd, file[cmd], true
}

// readSettings reads a Mercury configuration file as section → key → value.
func readSettings(path string) (map[string]map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	file := map[string]map[string]any{}
	if err := yaml.Unmarshal(b, &file); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return file, nil
}

// value is a setting as its flag takes it: a list joined with commas, like the daemon does.
func value(v any) string {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, item := range list {
			parts[i] = fmt.Sprint(item)
		}
		return strings.Join(parts, ",")
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// owners collects which aggregator instances own which input partitions, per phase.
type owners struct {
	config string                      // the settings file whose topics section sizes the topics
	phases map[string]map[int][]string // phase → partition → instances
	all    map[string][]string         // phase → instances that own every partition (no --partitions)
}

func newOwners(config string) *owners {
	return &owners{config: config, phases: map[string]map[int][]string{}, all: map[string][]string{}}
}

// add records an aggregator instance from its merged settings.
func (o *owners) add(t *testing.T, where string, section map[string]any) {
	t.Helper()
	phase := value(section["phase"])
	if o.phases[phase] == nil {
		o.phases[phase] = map[int][]string{}
	}
	parts := value(section["partitions"])
	if strings.TrimSpace(parts) == "" {
		o.all[phase] = append(o.all[phase], where)
		return
	}
	for _, f := range strings.Split(parts, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 0 {
			t.Errorf("%s: --partitions: %q is not a partition number", where, f)
			continue
		}
		o.phases[phase][p] = append(o.phases[phase][p], where)
	}
}

// check: the instances of each phase own disjoint partition sets that cover its input topic
// (two owners of a partition would count its spans twice, none would leave them uncounted).
func (o *owners) check(t *testing.T) {
	t.Helper()
	file, err := readSettings(o.config)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]string{}
	for _, kv := range strings.Split(value(file["topics"]["partitions"]), ",") {
		if topic, n, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			counts[topic] = n
		}
	}
	inputs := map[string]string{"1": bus.TopicSpans, "2": bus.TopicMetrics20s}
	for phase, owned := range o.phases {
		topic, ok := inputs[phase]
		if !ok {
			t.Errorf("aggregator phase %q: want 1 or 2", phase)
			continue
		}
		n := bus.DefaultPartitions(topic)
		if s, ok := counts[topic]; ok {
			if n, err = strconv.Atoi(s); err != nil {
				t.Errorf("%s: topics.partitions: %s=%q", o.config, topic, s)
				continue
			}
		}
		if all := o.all[phase]; len(all) > 0 {
			if len(all) > 1 || len(owned) > 0 {
				t.Errorf("aggregator phase %s: %s owns every partition of %s, but other instances run too", phase, all[0], topic)
			}
			continue
		}
		for p := range n {
			switch who := owned[p]; len(who) {
			case 0:
				t.Errorf("aggregator phase %s: partition %d of %s (%d partitions) has no owner", phase, p, topic, n)
			case 1:
			default:
				t.Errorf("aggregator phase %s: partition %d of %s is owned by %s", phase, p, topic, strings.Join(who, " and "))
			}
		}
		for p, who := range owned {
			if p >= n {
				t.Errorf("aggregator phase %s: %s owns partition %d, but %s has %d", phase, who[0], p, topic, n)
			}
		}
	}
}

// healthPort is the port a command serves /healthz on: its --http, or for the gateway its
// config file's admin_listen (loaded with the gateway's own loader).
func healthPort(cmd string, section map[string]any, mounts map[string]string) (string, error) {
	addr, _ := section["http"].(string)
	if cmd == "gateway" {
		inImage, _ := section["config"].(string)
		file, ok := mounts[inImage]
		if !ok {
			return "", fmt.Errorf("gateway config %q is not mounted from a repository file", inImage)
		}
		gc, err := gateway.LoadConfig(file)
		if err != nil {
			return "", err
		}
		addr = gc.AdminListen
	}
	if addr == "" {
		return "", nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %v", addr, err)
	}
	return port, nil
}

func isMercuryImage(image string) bool {
	name, _, _ := strings.Cut(image, ":")
	return name == "mercury"
}

type composeService struct {
	Image       string   `yaml:"image"`
	Command     []string `yaml:"command"`
	Volumes     []string `yaml:"volumes"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func TestComposeConfig(t *testing.T) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("docker-compose is not in PATH (Debian package docker-compose): the compose file's syntax is not checked")
	}
	cmd := exec.Command("docker-compose", "-f", "docker-compose.yml", "config", "-q")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config -q: %v\n%s", err, out)
	}
}

func TestComposeServices(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	n := 0
	own := newOwners("mercury.yaml")
	for name, s := range compose.Services {
		if !isMercuryImage(s.Image) {
			continue
		}
		n++
		c := container{where: "docker-compose.yml service " + name, argv: s.Command, mounts: map[string]string{}}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && strings.HasPrefix(parts[0], "./") {
				c.mounts[parts[1]] = filepath.Join("..", parts[0])
			}
		}
		if len(s.Healthcheck.Test) > 0 {
			p, err := urlPort(s.Healthcheck.Test[len(s.Healthcheck.Test)-1])
			if err != nil {
				t.Errorf("%s: health check: %v", c.where, err)
				continue
			}
			c.healthy = []string{p}
		}
		if cmd, section, ok := checkContainer(t, c); ok && cmd == "aggregator" {
			own.add(t, c.where, section)
		}
	}
	if n == 0 {
		t.Fatal("docker-compose.yml runs no service on the mercury image")
	}
	own.check(t)
}

// urlPort is the port of a health check's URL (its last argument).
func urlPort(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Port() == "" {
		return "", fmt.Errorf("want an http URL with a port as the last argument, got %q", s)
	}
	return u.Port(), nil
}

// The parts of a Kubernetes object the checks look at; every workload kind keeps its pod
// template at spec.template, a CronJob one level further down.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas    *int         `yaml:"replicas"`
		Template    *podTemplate `yaml:"template"`
		JobTemplate *struct {
			Spec struct {
				Template *podTemplate `yaml:"template"`
			} `yaml:"spec"`
		} `yaml:"jobTemplate"`
	} `yaml:"spec"`
}

type podTemplate struct {
	Spec struct {
		Containers []k8sContainer `yaml:"containers"`
		Volumes    []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

// A probe's port is a containerPort's name or a number (an int-or-string in Kubernetes).
type probe struct {
	HTTPGet *struct {
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	TCPSocket *struct {
		Port string `yaml:"port"`
	} `yaml:"tcpSocket"`
}

func (p *probe) port() string {
	switch {
	case p.HTTPGet != nil:
		return p.HTTPGet.Port
	case p.TCPSocket != nil:
		return p.TCPSocket.Port
	}
	return ""
}

// configMaps are kustomization.yaml's generated ConfigMaps: name → the files they hold.
func configMaps(t *testing.T) map[string][]string {
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		ConfigMapGenerator []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	maps := map[string][]string{}
	for _, g := range k.ConfigMapGenerator {
		maps[g.Name] = g.Files
	}
	return maps
}

func TestKubernetesManifests(t *testing.T) {
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s (%v)", err)
	}
	generated := configMaps(t)
	own := newOwners("mercury.yaml")
	containers := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for doc := 1; ; doc++ {
			var o k8sObject
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s document %d: %v", f, doc, err)
			}
			if o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s document %d: kind and metadata.name are required (kind %q, name %q)", f, doc, o.Kind, o.Metadata.Name)
				continue
			}
			tmpl := o.Spec.Template
			if o.Spec.JobTemplate != nil {
				tmpl = o.Spec.JobTemplate.Spec.Template
			}
			if tmpl == nil {
				continue
			}
			replicas := 1
			if o.Spec.Replicas != nil {
				replicas = *o.Spec.Replicas
			}
			containers += checkPod(t, fmt.Sprintf("%s %s/%s", f, o.Kind, o.Metadata.Name), tmpl, replicas, generated, own)
		}
	}
	if containers == 0 {
		t.Fatal("deploy/k8s runs no container on the mercury image")
	}
	own.check(t)
}

// checkPod checks a pod template's Mercury containers, records its aggregators (once per
// replica: each replica is an owner) and returns how many containers there were.
func checkPod(t *testing.T, where string, tmpl *podTemplate, replicas int, generated map[string][]string, own *owners) int {
	t.Helper()
	volumeFiles := map[string][]string{} // volume → the repository files it holds
	for _, v := range tmpl.Spec.Volumes {
		if v.ConfigMap != nil {
			files, ok := generated[v.ConfigMap.Name]
			if !ok {
				t.Errorf("%s: volume %s: ConfigMap %q is not generated by kustomization.yaml", where, v.Name, v.ConfigMap.Name)
			}
			volumeFiles[v.Name] = files
		}
	}
	n := 0
	for _, k := range tmpl.Spec.Containers {
		cw := where + " container " + k.Name
		declared := map[string]string{} // port name and number → number
		for _, p := range k.Ports {
			num := strconv.Itoa(p.ContainerPort)
			declared[num] = num
			if p.Name != "" {
				declared[p.Name] = num
			}
		}
		var healthy []string
		for _, p := range []*probe{k.LivenessProbe, k.ReadinessProbe, k.StartupProbe} {
			if p == nil {
				continue
			}
			num, ok := declared[p.port()]
			if !ok {
				t.Errorf("%s: probe port %q is not a declared containerPort", cw, p.port())
				continue
			}
			healthy = append(healthy, num)
		}
		if !isMercuryImage(k.Image) {
			continue
		}
		n++
		argv := k.Args
		if len(k.Command) > 0 {
			if filepath.Base(k.Command[0]) != "mercury" {
				t.Errorf("%s: command %q does not run mercury", cw, k.Command)
				continue
			}
			argv = append(k.Command[1:len(k.Command):len(k.Command)], k.Args...)
		}
		c := container{where: cw, argv: argv, mounts: map[string]string{}, healthy: healthy}
		for _, m := range k.VolumeMounts {
			for _, f := range volumeFiles[m.Name] {
				c.mounts[filepath.Join(m.MountPath, filepath.Base(f))] = f
			}
		}
		if _, ok := c.mounts[configInImage]; !ok {
			t.Errorf("%s: nothing mounted at %s: the pod would run on the image's copy, not the ConfigMap", cw, configInImage)
		}
		if cmd, section, ok := checkContainer(t, c); ok && cmd == "aggregator" {
			for r := range replicas {
				own.add(t, fmt.Sprintf("%s (replica %d)", cw, r+1), section)
			}
		}
	}
	return n
}

// The configuration files themselves, as an operator would check them before mounting.
func TestMountedConfigFiles(t *testing.T) {
	if out, err := exec.Command(mercuryBin, "config", "check", "mercury.yaml").CombinedOutput(); err != nil {
		t.Errorf("mercury config check deploy/mercury.yaml: %v\n%s", err, out)
	}
	if _, err := gateway.LoadConfig("gateway.yaml"); err != nil {
		t.Errorf("deploy/gateway.yaml: %v", err)
	}
}
