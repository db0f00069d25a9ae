// Package testproc holds what tests running Mercury's daemons as processes share: building
// the binary once, picking loopback ports, and waiting for a condition with a deadline
// (never a fixed sleep).
package testproc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// RunWithMercury is a TestMain body: it builds cmd/mercury into a temporary directory, sets
// *bin to it, runs the tests and removes the binary; it returns the exit code.
func RunWithMercury(m *testing.M, bin *string) int {
	dir, err := os.MkdirTemp("", "mercury-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*bin = filepath.Join(dir, "mercury")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", *bin, "github.com/mercury-apm/mercury/cmd/mercury")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mercury:", err)
		return 1
	}
	return m.Run()
}

// FreeAddr is a loopback address nothing listens on right now, below the kernel's range of
// ephemeral ports: a daemon restarted on it after a kill must not find it taken by some
// outgoing connection in the meantime, which a port the kernel handed out (":0") can be.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo, hi := 20000, ephemeralStart()
	for range 200 {
		if hi <= lo {
			break
		}
		addr := fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ephemeralStart is the first port the kernel hands out for outgoing connections (Linux;
// elsewhere the common default).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil {
		return 32768
	}
	return first
}

// Eventually polls cond until it holds, failing the test with cond's last word when within
// has passed.
func Eventually(t testing.TB, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not by the deadline (last: %s)", what, last)
}
