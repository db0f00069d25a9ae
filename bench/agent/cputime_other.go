//go:build !linux

package agentbench

import "time"

// cpuTime is not measured off Linux; the benchmarks then report -1.
func cpuTime(bool) time.Duration { return -1 }
