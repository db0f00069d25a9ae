package ship

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/schemas"
)

// kcatRecords consumes topic to its end with kcat and returns (key, value) pairs. The format
// "%K:%k%R%s" frames the key by its decimal length and the value by a 4-byte big-endian
// length, so binary payloads survive.
func kcatRecords(t *testing.T, kcat, addr, topic string) [][2][]byte {
	t.Helper()
	out, err := exec.Command(kcat, "-b", addr, "-C", "-t", topic, "-e", "-q", "-f", "%K:%k%R%s").Output()
	if err != nil {
		t.Fatalf("kcat -C -t %s: %v", topic, err)
	}
	var recs [][2][]byte
	for len(out) > 0 {
		i := bytes.IndexByte(out, ':')
		kl, err := strconv.Atoi(string(out[:i]))
		if err != nil || i+1+kl+4 > len(out) {
			t.Fatalf("kcat output not framed as expected at %q", out[:min(len(out), 40)])
		}
		key := out[i+1 : i+1+kl]
		out = out[i+1+kl:]
		vl := int(binary.BigEndian.Uint32(out))
		recs = append(recs, [2][]byte{key, out[4 : 4+vl]})
		out = out[4+vl:]
	}
	return recs
}

// TestKcatReadsShippedTopics checks the wire format against a third-party client
// (librdkafka's kcat): it lists the embedded broker's topics and reads what the shipper
// produced, and every payload decodes with the schema it names.
func TestKcatReadsShippedTopics(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if kcat, err = exec.LookPath("kafkacat"); err != nil {
			t.Skip("kcat not installed (Debian package kafkacat); skipping the third-party client check")
		}
	}
	spoolDir := t.TempDir()
	b := startBroker(t, t.TempDir(), "")
	defer b.Close()

	spans := newSpoolWriter(t, spoolDir, StreamSpans, schemas.NameSpan)
	bodies, ids := newSpanGen(3).bodies(40)
	spans.block(bodies)
	spans.close()
	events := newSpoolWriter(t, spoolDir, StreamEvents, schemas.NameEvent)
	ev, _ := schemas.AppendBinary(nil, schemas.Event{Service: "checkout", Host: "h1", Type: schemas.EventBreaker, Name: "db"})
	events.block([][]byte{ev})
	events.close()
	hbs := newSpoolWriter(t, spoolDir, StreamHeartbeats, schemas.NameHeartbeat)
	hb, _ := schemas.AppendBinary(nil, schemas.Heartbeat{Service: "checkout", Host: "h1", PID: 7, Stats: map[string]int64{"queued": 1}})
	hbs.block([][]byte{hb})
	hbs.close()

	sh := startShipper(t, Config{Spool: spoolDir, Bus: bus.Config{Brokers: []string{b.Addr()}}, Poll: 5 * time.Millisecond, Logger: quietLog()})
	waitFor(t, 20*time.Second, "42 records shipped", func() bool { return sh.s.Stats().Records == 42 })
	if err := sh.stop(); err != nil {
		t.Fatal(err)
	}

	md, err := exec.Command(kcat, "-b", b.Addr(), "-L").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -L: %v\n%s", err, md)
	}
	for _, topic := range bus.Topics {
		if !strings.Contains(string(md), `topic "`+topic+`"`) {
			t.Errorf("kcat -L does not list %s:\n%s", topic, md)
		}
	}
	if !strings.Contains(string(md), `topic "mercury.spans" with 6 partitions`) {
		t.Errorf("mercury.spans should have 6 partitions:\n%s", md)
	}

	got := map[schemas.SpanID]bool{}
	for _, r := range kcatRecords(t, kcat, b.Addr(), bus.TopicSpans) {
		var s schemas.Span
		if err := schemas.Unmarshal(r[1], &s); err != nil {
			t.Fatal(err)
		}
		if string(r[0]) != hex.EncodeToString(s.TraceID[:]) {
			t.Fatalf("span key %q, trace %s", r[0], s.TraceID)
		}
		got[s.SpanID] = true
	}
	for _, id := range ids {
		if !got[id] {
			t.Fatalf("kcat did not read span %s (%d read)", id, len(got))
		}
	}
	er := kcatRecords(t, kcat, b.Addr(), bus.TopicEvents)
	var e schemas.Event
	if len(er) != 1 || string(er[0][0]) != "checkout" || schemas.Unmarshal(er[0][1], &e) != nil || e.Name != "db" {
		t.Fatalf("events via kcat: %q (%+v)", er, e)
	}
	hr := kcatRecords(t, kcat, b.Addr(), bus.TopicHeartbeats)
	var h schemas.Heartbeat
	if len(hr) != 1 || string(hr[0][0]) != "checkout/h1" || schemas.Unmarshal(hr[0][1], &h) != nil || h.PID != 7 {
		t.Fatalf("heartbeats via kcat: %q (%+v)", hr, h)
	}
}
