// Package cpu measures the CPU usage BBR compares against its threshold.
//
// Inside a container the host's /proc/stat says nothing about the quota the
// gateway actually runs under, so the reader prefers the cgroup's own
// accounting: cgroup v2 cpu.max + cpu.stat, cgroup v1 cpu.cfs_quota_us +
// cpuacct.usage, and only then /proc/stat.
package cpu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mercury-apm/mercury/internal/clock"
)

// Source reports smoothed CPU usage in [0, 1] of the capacity available to
// the process. BBR takes a Source so tests inject values.
type Source interface {
	Usage() float64
}

// Fixed is a Source with a settable value, for tests and for disabling the
// CPU condition.
type Fixed struct{ bits atomic.Uint64 }

// Set stores u.
func (f *Fixed) Set(u float64) { f.bits.Store(math.Float64bits(u)) }

// Usage returns the stored value.
func (f *Fixed) Usage() float64 { return math.Float64frombits(f.bits.Load()) }

// Counter reads cumulative CPU counters: busy time and the capacity that was
// available over the same span, in any common unit. Usage over an interval is
// Δbusy / Δcapacity.
type Counter interface {
	Read() (busy, capacity float64, err error)
}

// NewCounter picks the best counter under the cgroup mount root (normally
// /sys/fs/cgroup) with procStat (normally /proc/stat) as the fallback.
func NewCounter(root, procStat string, clk clock.Clock) Counter {
	clk = clock.Or(clk)
	if b, err := os.ReadFile(filepath.Join(root, "cpu.stat")); err == nil && bytes.Contains(b, []byte("usage_usec")) {
		return &cgroup2{root: root, clock: clk}
	}
	for _, dir := range []string{"cpuacct", "cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(root, dir, "cpuacct.usage")); err == nil {
			return &cgroup1{acct: filepath.Join(root, dir), cpu: cgroup1CPUDir(root), clock: clk}
		}
	}
	return procCounter(procStat)
}

func cgroup1CPUDir(root string) string {
	for _, dir := range []string{"cpu", "cpu,cpuacct"} {
		if _, err := os.Stat(filepath.Join(root, dir, "cpu.cfs_quota_us")); err == nil {
			return filepath.Join(root, dir)
		}
	}
	return ""
}

// cores limits the host's CPUs by a CFS quota; quota ≤ 0 means unlimited.
func cores(quota, period float64) float64 {
	n := float64(runtime.NumCPU())
	if quota > 0 && period > 0 && quota/period < n {
		return quota / period
	}
	return n
}

type cgroup2 struct {
	root  string
	clock clock.Clock
}

// Read returns busy µs and capacity in µs (wall µs × allowed cores).
func (c *cgroup2) Read() (float64, float64, error) {
	max, err := os.ReadFile(filepath.Join(c.root, "cpu.max"))
	quota, period := -1.0, 100000.0
	if err == nil { // cpu.max is absent on the root cgroup: unlimited
		f := strings.Fields(string(max))
		if len(f) != 2 {
			return 0, 0, fmt.Errorf("cpu: malformed cpu.max %q", max)
		}
		if f[0] != "max" {
			if quota, err = strconv.ParseFloat(f[0], 64); err != nil {
				return 0, 0, fmt.Errorf("cpu: cpu.max quota: %w", err)
			}
		}
		if period, err = strconv.ParseFloat(f[1], 64); err != nil {
			return 0, 0, fmt.Errorf("cpu: cpu.max period: %w", err)
		}
	}
	usage, err := statField(filepath.Join(c.root, "cpu.stat"), "usage_usec")
	if err != nil {
		return 0, 0, err
	}
	wall := float64(c.clock.Now()) / 1e3
	return usage, wall * cores(quota, period), nil
}

type cgroup1 struct {
	acct, cpu string
	clock     clock.Clock
}

// Read returns busy ns and capacity in ns.
func (c *cgroup1) Read() (float64, float64, error) {
	usage, err := readNumber(filepath.Join(c.acct, "cpuacct.usage"))
	if err != nil {
		return 0, 0, err
	}
	quota, period := -1.0, 100000.0
	if c.cpu != "" {
		if quota, err = readNumber(filepath.Join(c.cpu, "cpu.cfs_quota_us")); err != nil {
			return 0, 0, err
		}
		if period, err = readNumber(filepath.Join(c.cpu, "cpu.cfs_period_us")); err != nil {
			return 0, 0, err
		}
	}
	return usage, float64(c.clock.Now()) * cores(quota, period), nil
}

type procCounter string

// Read returns busy and total jiffies summed over all CPUs.
func (p procCounter) Read() (float64, float64, error) {
	f, err := os.Open(string(p))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 || fields[0] != "cpu" {
			continue
		}
		var total, idle float64
		for i, v := range fields[1:] {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("cpu: %s: %w", p, err)
			}
			total += n
			if i == 3 || i == 4 { // idle, iowait
				idle += n
			}
		}
		return total - idle, total, nil
	}
	return 0, 0, fmt.Errorf("cpu: no aggregate cpu line in %s", p)
}

func readNumber(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return 0, fmt.Errorf("cpu: %s: %w", path, err)
	}
	return n, nil
}

func statField(path, key string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && k == key {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("cpu: %s %s: %w", path, key, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("cpu: %s has no %s", path, key)
}

// Sampler turns a Counter into a smoothed Source. Sample is called
// periodically (Run does that); Usage is a lock-free read for the hot path.
type Sampler struct {
	counter Counter
	decay   float64

	mu             sync.Mutex
	busy, capacity float64
	primed         bool
	usage          atomic.Uint64
}

// NewSampler smooths with usage = decay·usage + (1−decay)·sample, as Kratos
// does with 0.95 at a 500 ms period: a load spike shows within seconds while
// one noisy sample does not trip BBR.
func NewSampler(c Counter, decay float64) *Sampler {
	if decay <= 0 || decay >= 1 {
		decay = 0.95
	}
	return &Sampler{counter: c, decay: decay}
}

// Usage returns the smoothed usage.
func (s *Sampler) Usage() float64 { return math.Float64frombits(s.usage.Load()) }

// Sample reads the counter once and folds the usage since the last read in.
func (s *Sampler) Sample() error {
	busy, capacity, err := s.counter.Read()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.primed && capacity > s.capacity {
		u := (busy - s.busy) / (capacity - s.capacity)
		u = min(max(u, 0), 1)
		s.usage.Store(math.Float64bits(s.decay*s.Usage() + (1-s.decay)*u))
	} else if s.primed {
		return errors.New("cpu: counter did not advance")
	}
	s.busy, s.capacity, s.primed = busy, capacity, true
	return nil
}

// Run samples every interval until ctx ends. It returns at once if the
// first sample fails (the counter is unusable here); later failures keep the
// last value, since one unreadable file must not flap BBR.
func (s *Sampler) Run(ctx context.Context, interval time.Duration) error {
	if err := s.Sample(); err != nil {
		return err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = s.Sample()
		}
	}
}
