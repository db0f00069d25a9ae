package agentbench

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user+sys) of the process, or with thread set, of the calling
// OS thread. On a loaded machine wall-clock ns/op mostly measures waiting for a core; CPU time
// is what the work itself costs.
func cpuTime(thread bool) time.Duration {
	who := 0 // RUSAGE_SELF
	if thread {
		who = 1 // RUSAGE_THREAD, not exported by package syscall
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
