package tsc

import (
	"sync"
	"syscall"
	"unsafe"
)

// Read returns the time-stamp counter. Call it only when Usable.
func Read() uint64

// usable is decided on first use, not at init: a program that links the agent without
// starting it reads no /proc file.
var usable = sync.OnceValue(func() bool { return invariant(readCPUInfo()) && rdtscAllowed() })

// rdtscAllowed asks the kernel whether RDTSC would fault in this process (a sandbox can make
// it raise SIGSEGV, which would kill the host).
func rdtscAllowed() bool {
	const prGetTSC, prTSCEnable = 25, 1
	var mode int32
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTSC, uintptr(unsafe.Pointer(&mode)), 0)
	return errno == 0 && mode == prTSCEnable
}
