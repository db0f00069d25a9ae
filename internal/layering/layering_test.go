// Package layering holds the test that keeps the dependency rules of docs/architecture.md:
// daemons meet only through topics and the query API, the agent links nothing of the
// backend, contracts know no backend, and schemas imports nothing of the project.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/mercury-apm/mercury/"

// daemons are the packages (with their subpackages) that only cmd/mercury and allinone may
// import side by side.
var daemons = []string{"collector", "aggregator", "alerter", "query", "gateway", "demo", "ingest"}

// imports maps each package of the module to its direct imports.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], mod) {
			m[strings.TrimPrefix(f[0], mod)] = f[1:]
		}
	}
	return m
}

func under(pkg, root string) bool { return pkg == root || strings.HasPrefix(pkg, root+"/") }

func daemonOf(pkg string) string {
	for _, d := range daemons {
		if under(pkg, d) {
			return d
		}
	}
	return ""
}

func TestDependencyRules(t *testing.T) {
	for pkg, imps := range imports(t) {
		for _, imp := range imps {
			if !strings.HasPrefix(imp, mod) {
				if under(pkg, "agent") && !under(pkg, "agent/ship") && !under(pkg, "agent/agentprom") && !under(pkg, "agent/agentsql") &&
					strings.Contains(imp, ".") && !strings.HasPrefix(imp, "github.com/linkedin/goavro") {
					t.Errorf("%s imports %s: the agent's core links the standard library, schemas and goavro only", pkg, imp)
				}
				continue
			}
			imp = strings.TrimPrefix(imp, mod)
			switch {
			case under(pkg, "schemas") && !under(imp, "schemas"):
				t.Errorf("%s imports %s: schemas imports nothing of the project", pkg, imp)
			case under(pkg, "agent") && (daemonOf(imp) != "" || under(imp, "storage")):
				t.Errorf("%s imports %s: the agent is linked into services and reaches no daemon or store", pkg, imp)
			case daemonOf(pkg) != "" && daemonOf(imp) != "" && daemonOf(pkg) != daemonOf(imp):
				t.Errorf("%s imports %s: daemons meet through topics and the query API only", pkg, imp)
			case under(pkg, "query") && under(imp, "agent"):
				t.Errorf("%s imports %s: the query service must not link the tracer", pkg, imp)
			case isContract(pkg) && isBackend(imp):
				t.Errorf("%s imports %s: a store contract knows no backend", pkg, imp)
			case isBackend(pkg) && daemonOf(imp) != "":
				t.Errorf("%s imports %s: backends know no daemon", pkg, imp)
			}
		}
	}
}

// isContract: the storage/<what>store packages that are not backends.
func isContract(pkg string) bool {
	return strings.HasPrefix(pkg, "storage/") && strings.HasSuffix(pkg, "store") && !isBackend(pkg)
}

func isBackend(pkg string) bool {
	for _, b := range []string{"storage/pebblestore", "storage/esstore", "storage/hbasestore"} {
		if under(pkg, b) {
			return true
		}
	}
	return false
}

// TestAgentLinksNoKafka: linking the agent (without its shipper) pulls in no Kafka client
// and no store.
func TestAgentLinksNoKafka(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../agent", "../../agent/agenthttp", "../../agent/agentsql").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "kafka") || strings.Contains(dep, "franz-go") || strings.Contains(dep, "pebble") || strings.Contains(dep, "elasticsearch") || strings.Contains(dep, "prometheus") {
			t.Errorf("the agent links %s", dep)
		}
	}
}
