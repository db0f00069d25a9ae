// Package tsc reads the CPU's time-stamp counter, where it can stand in for the monotonic
// clock. A span reads the clock twice; on VMs (kvm-clock) a monotonic read costs about 30 ns,
// the counter about 10. The agent calibrates ticks against the monotonic clock itself (see
// agent's clockBase), so this package only reads, and says whether reading is safe.
package tsc

import (
	"bytes"
	"os"
)

// Usable reports whether Read returns an invariant counter: one that ticks at a constant rate
// through frequency changes and idle states (Linux: constant_tsc and nonstop_tsc), that this
// process may read without a fault (PR_GET_TSC); on Linux on amd64 only.
func Usable() bool { return usable() }

func readCPUInfo() []byte {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return b
}

// invariant looks for both flags on the first processor's flags line (all processors share
// them).
func invariant(cpuinfo []byte) bool {
	for line := range bytes.Lines(cpuinfo) {
		if key, flags, ok := bytes.Cut(line, []byte(":")); ok && bytes.Equal(bytes.TrimSpace(key), []byte("flags")) {
			n := 0
			for _, f := range bytes.Fields(flags) {
				if string(f) == "constant_tsc" || string(f) == "nonstop_tsc" {
					n++
				}
			}
			return n == 2
		}
	}
	return false
}
