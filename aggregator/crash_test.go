package aggregator_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/aggregator"
	"github.com/mercury-apm/mercury/bus"
	"github.com/mercury-apm/mercury/internal/daemon"
	"github.com/mercury-apm/mercury/storage/metricstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
)

// The crash test re-runs this test binary as a phase, so it can be SIGKILLed.
func TestMain(m *testing.M) {
	if phase := os.Getenv("MERCURY_AGG_CHILD"); phase != "" {
		os.Exit(child(phase))
	}
	goleak.VerifyTestMain(m)
}

// child runs one phase until SIGTERM. MERCURY_AGG_KILL_AT=<point>:<n> makes it SIGKILL
// itself the n-th time it reaches that point of a flush.
func child(phase string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if at := os.Getenv("MERCURY_AGG_KILL_AT"); at != "" {
		point, n, _ := strings.Cut(at, ":")
		left, _ := strconv.Atoi(n)
		var mu sync.Mutex
		aggregator.SetHook(func(p string) {
			mu.Lock()
			defer mu.Unlock()
			if p == point {
				if left--; left == 0 {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {} // the signal is on its way
				}
			}
		})
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tel := daemon.Telemetry{Logger: log}
	cfg := bus.Config{Brokers: []string{os.Getenv("MERCURY_BROKERS")}}
	var store metricstore.Store
	if phase == "2" {
		s, err := pebblestore.Open(os.Getenv("MERCURY_STORE_DIR"), pebblestore.Options{CacheBytes: 16 << 20, MemTableBytes: 8 << 20})
		if err != nil {
			fmt.Fprintln(os.Stderr, "open store:", err)
			return 1
		}
		defer s.Close()
		store = s
	}
	p, _ := strconv.Atoi(phase)
	c := phaseConfig(p, cfg, store, tel)
	// Small ranges and frequent flushes: many intents, so kills land inside flushes; few
	// points held, so late partials re-read evicted points from the store.
	c.FlushInterval, c.MaxOpen, c.MaxPoints = 150*time.Millisecond, 4000, 500
	a, err := aggregator.New(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "new:", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	return 0
}

// proc is one running child phase.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// TestCrashAnywhere kills phase 1 and phase 2 (separate processes, SIGKILL) at random moments
// and right after each crash-sensitive step of a flush, restarts them, and checks that the
// minute points are still exactly the batch recomputation.
func TestCrashAnywhere(t *testing.T) {
	n, kills := 1_000_000, 24
	if testing.Short() {
		n, kills = 100_000, 20
	}
	d := generate(n, 2)
	want := compute(d)
	cfg := startBroker(t)
	// The spans arrive in one chunk per kill, in order, so every restarted child has work:
	// flushes to interrupt, ranges to replay.
	chunk := func(i int) []kafka.Message { return d.msgs[len(d.msgs)*i/(kills+1) : len(d.msgs)*(i+1)/(kills+1)] }
	produce(t, cfg, chunk(0))
	dir := t.TempDir()
	var replays atomic.Int32
	start := func(phase int, killAt string) *proc {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "MERCURY_AGG_CHILD="+strconv.Itoa(phase), "MERCURY_BROKERS="+cfg.Brokers[0],
			"MERCURY_STORE_DIR="+dir, "MERCURY_AGG_KILL_AT="+killAt)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &proc{cmd: cmd, done: make(chan struct{})}
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.Contains(line, "replaying an interrupted flush"):
					replays.Add(1)
				case strings.Contains(line, "level=ERROR"), strings.HasPrefix(line, "run:"), strings.HasPrefix(line, "open store:"):
					t.Log(line)
				}
			}
			io.Copy(io.Discard, stderr)
			cmd.Wait()
			close(p.done)
		}()
		return p
	}
	kill := func(p *proc) {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	procs := [3]*proc{nil, start(1, ""), start(2, "")}
	points := []string{"phase1-intent", "phase1-emitted", "phase2-stored"}
	rng := rand.New(rand.NewPCG(7, 8))
	hooked, selfKilled := 0, 0
	for i := range kills {
		produce(t, cfg, chunk(i+1))
		phase := 1 + i%2
		if i%3 == 0 { // at a chosen step of a flush
			point := points[(i/3)%len(points)]
			phase = 1
			if strings.HasPrefix(point, "phase2") {
				phase = 2
			}
			kill(procs[phase])
			procs[phase] = start(phase, fmt.Sprintf("%s:%d", point, 1+rng.IntN(3)))
			hooked++
			select {
			case <-procs[phase].done:
				selfKilled++
			case <-time.After(10 * time.Second): // the step did not come (the chunk was done)
				kill(procs[phase])
			}
			procs[phase] = start(phase, "")
			continue
		}
		time.Sleep(time.Duration(50+rng.IntN(700)) * time.Millisecond)
		kill(procs[phase])
		procs[phase] = start(phase, "")
	}
	waitCaughtUp(t, cfg, 3*time.Minute)
	for _, p := range procs[1:] {
		p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("graceful stop exited %d", code)
		}
	}
	store, err := pebblestore.Open(dir, pebblestore.Options{CacheBytes: 16 << 20, MemTableBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	check(t, want, store)
	t.Logf("%d spans, %d points; %d kills, %d at a flush step (%d reached it), %d phase-1 replays", n, want.Points(), kills, hooked, selfKilled, replays.Load())
	if replays.Load() == 0 {
		t.Error("no kill interrupted a phase-1 flush: the test did not exercise the replay")
	}
}
