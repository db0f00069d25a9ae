package agentprom_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/agent"
	"github.com/mercury-apm/mercury/agent/agentprom"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCollector(t *testing.T) {
	a, err := agent.New(agent.Config{Service: "order", SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	for i := 0; i < 3; i++ {
		_, s := a.StartSpan(context.Background(), "op")
		s.End()
	}
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.Close(context.Background())
	_, late := a.StartSpan(context.Background(), "after close")
	late.End() // dropped: closed

	reg := prometheus.NewPedanticRegistry()
	c := agentprom.NewCollector(a, agentprom.WithConstLabels(prometheus.Labels{"agent": "main"}))
	reg.MustRegister(c)
	st := a.Stats()
	want := fmt.Sprintf(`
# HELP mercury_agent_dropped_total Records dropped instead of blocking the host, by reason (queue_full: the writer lags; disk_error; closed; internal: an agent bug, logged).
# TYPE mercury_agent_dropped_total counter
mercury_agent_dropped_total{agent="main",reason="closed"} 1
mercury_agent_dropped_total{agent="main",reason="disk_error"} 0
mercury_agent_dropped_total{agent="main",reason="internal"} 0
mercury_agent_dropped_total{agent="main",reason="queue_full"} 0
# HELP mercury_agent_info Agent version and the version of the dynamic config it runs; always 1.
# TYPE mercury_agent_info gauge
mercury_agent_info{agent="main",config_version="local",version=%q} 1
# HELP mercury_agent_queue_length Spans waiting in memory for the writer.
# TYPE mercury_agent_queue_length gauge
mercury_agent_queue_length{agent="main"} 0
# HELP mercury_agent_spans_written_total Spans the agent appended to its spool.
# TYPE mercury_agent_spans_written_total counter
mercury_agent_spans_written_total{agent="main"} 3
# HELP mercury_agent_spool_bytes Bytes the spool holds on disk.
# TYPE mercury_agent_spool_bytes gauge
mercury_agent_spool_bytes{agent="main"} %d
`, agent.Version, st.SpoolBytes)
	if st.SpoolBytes == 0 {
		t.Fatal("spool reports 0 bytes after a flush")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"mercury_agent_dropped_total", "mercury_agent_info", "mercury_agent_queue_length",
		"mercury_agent_spans_written_total", "mercury_agent_spool_bytes"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c); n != 12 {
		t.Fatalf("%d metrics, want 12", n)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}
