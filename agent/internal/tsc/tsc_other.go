//go:build !linux || !amd64

package tsc

// Read returns 0: no counter is read here.
func Read() uint64 { return 0 }

func usable() bool { return false }
