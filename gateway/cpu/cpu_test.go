package cpu

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mercury-apm/mercury/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// usageOver samples, lets the fixture advance, samples again and returns the
// raw usage of that interval (decay ≈ 0 so the EMA is the sample).
func usageOver(t *testing.T, c Counter, clk *clock.Fake, advance func()) float64 {
	t.Helper()
	s := NewSampler(c, 1e-9)
	if err := s.Sample(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	advance()
	if err := s.Sample(); err != nil {
		t.Fatal(err)
	}
	return s.Usage()
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestCgroupV2Quota(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewFake(time.Hour)
	// 0.5 CPU quota; 250 ms of CPU in one second = 50 % of the quota.
	write(t, dir, map[string]string{"cpu.max": "50000 100000\n", "cpu.stat": "usage_usec 1000000\nuser_usec 1\n"})
	c := NewCounter(dir, "/nonexistent", clk)
	if _, ok := c.(*cgroup2); !ok {
		t.Fatalf("picked %T", c)
	}
	got := usageOver(t, c, clk, func() { write(t, dir, map[string]string{"cpu.stat": "usage_usec 1250000\n"}) })
	if !near(got, 0.5) {
		t.Fatalf("usage %v, want 0.5", got)
	}
}

func TestCgroupV2Unlimited(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewFake(time.Hour)
	write(t, dir, map[string]string{"cpu.max": "max 100000\n", "cpu.stat": "usage_usec 0\n"})
	c := NewCounter(dir, "/nonexistent", clk)
	n := float64(runtime.NumCPU())
	got := usageOver(t, c, clk, func() { write(t, dir, map[string]string{"cpu.stat": "usage_usec 1000000\n"}) })
	if !near(got, 1/n) {
		t.Fatalf("usage %v, want %v", got, 1/n)
	}
}

func TestCgroupV1(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewFake(time.Hour)
	write(t, dir, map[string]string{
		"cpu,cpuacct/cpu.cfs_quota_us":  "25000\n",
		"cpu,cpuacct/cpu.cfs_period_us": "100000\n",
		"cpu,cpuacct/cpuacct.usage":     "5000000000\n",
	})
	c := NewCounter(dir, "/nonexistent", clk)
	if _, ok := c.(*cgroup1); !ok {
		t.Fatalf("picked %T", c)
	}
	// 0.25 CPU quota, 200 ms used in 1 s = 80 %.
	got := usageOver(t, c, clk, func() {
		write(t, dir, map[string]string{"cpu,cpuacct/cpuacct.usage": "5200000000\n"})
	})
	if !near(got, 0.8) {
		t.Fatalf("usage %v, want 0.8", got)
	}
}

func TestProcStatFallback(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewFake(time.Hour)
	stat := filepath.Join(dir, "stat")
	write(t, dir, map[string]string{"stat": "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 1 1 1 1\n"})
	c := NewCounter(filepath.Join(dir, "nocgroup"), stat, clk)
	// +300 busy (user+system), +100 idle → 75 %.
	got := usageOver(t, c, clk, func() { write(t, dir, map[string]string{"stat": "cpu  300 0 200 800 100 0 0 0 0 0\n"}) })
	if !near(got, 0.75) {
		t.Fatalf("usage %v, want 0.75", got)
	}
}

func TestMalformedFiles(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewFake(time.Hour)
	write(t, dir, map[string]string{"cpu.max": "banana\n", "cpu.stat": "usage_usec 1\n"})
	if _, _, err := NewCounter(dir, "", clk).Read(); err == nil {
		t.Fatal("malformed cpu.max accepted")
	}
	write(t, dir, map[string]string{"stat": "intr 1 2 3\n"})
	if _, _, err := procCounter(filepath.Join(dir, "stat")).Read(); err == nil {
		t.Fatal("stat without cpu line accepted")
	}
}

func TestSamplerSmooths(t *testing.T) {
	dir, clk := t.TempDir(), clock.NewFake(time.Hour)
	write(t, dir, map[string]string{"cpu.max": "100000 100000\n", "cpu.stat": "usage_usec 0\n"})
	s := NewSampler(NewCounter(dir, "", clk), 0.5)
	s.Sample()
	clk.Advance(time.Second)
	write(t, dir, map[string]string{"cpu.stat": "usage_usec 1000000\n"}) // 100 %
	s.Sample()
	if !near(s.Usage(), 0.5) {
		t.Fatalf("after one full sample: %v, want 0.5", s.Usage())
	}
	clk.Advance(time.Second)
	write(t, dir, map[string]string{"cpu.stat": "usage_usec 2000000\n"})
	s.Sample()
	if !near(s.Usage(), 0.75) {
		t.Fatalf("after two: %v, want 0.75", s.Usage())
	}
}

func TestRunStops(t *testing.T) {
	s := NewSampler(NewCounter("/nonexistent", "/proc/stat", nil), 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx, time.Millisecond) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
