// Package cputime reports a benchmark's process CPU time per operation.
// On a shared machine wall-clock ns/op also counts the time the benchmark
// waited for a CPU; cpu-ns/op does not.
package cputime

import (
	"syscall"
	"testing"
	"time"
)

// Used is the user+system CPU time this process has consumed.
func Used() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Measure starts measuring; call the returned function right after the
// benchmark loop to report cpu-ns/op.
func Measure(b *testing.B) (stop func()) {
	start := Used()
	return func() { b.ReportMetric(float64(Used()-start)/float64(b.N), "cpu-ns/op") }
}
