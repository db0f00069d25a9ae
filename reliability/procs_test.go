package reliability

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemon is one `mercury` subcommand run as its own process, restarted with the same
// arguments (and so the same data directory and ports) after a kill.
type daemon struct {
	name    string
	args    []string
	url     string // of its --http listener: /healthz and the daemon's own endpoints
	logPath string

	mu      sync.Mutex // one fault at a time per daemon
	cmd     *exec.Cmd
	running bool          // started and not yet ended by the drill
	exited  chan struct{} // closed when the process ended, with its status in err
	err     error
	kills   int
}

// newDaemon prepares `mercury args... --http httpAddr`, logging to dir/name.log.
func newDaemon(dir, name, httpAddr string, args ...string) *daemon {
	return &daemon{name: name, args: append(args, "--http", httpAddr), url: "http://" + httpAddr,
		logPath: filepath.Join(dir, name+".log")}
}

// healthClient bounds each health probe: a port answering nothing must not hang the drill.
var healthClient = &http.Client{Timeout: 2 * time.Second}

// start runs the process and waits until its /healthz answers 200.
func (d *daemon) start() error {
	log, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "=== start %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), strings.Join(d.args, " "))
	d.cmd = exec.Command(mercuryBin, d.args...)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	err = d.cmd.Start()
	log.Close() // the child has its own descriptor
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	d.exited = exited
	go func(c *exec.Cmd) { d.err = c.Wait(); close(exited) }(d.cmd)
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited on start: %v\n%s", d.name, d.err, d.logTail())
		default:
		}
		if resp, err := healthClient.Get(d.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				d.running = true
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy within a minute\n%s", d.name, d.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports an error when the process ended without being told to.
func (d *daemon) alive() error {
	select {
	case <-d.exited:
		return fmt.Errorf("%s died on its own: %v\n%s", d.name, d.err, d.logTail())
	default:
		return nil
	}
}

// crash SIGKILLs the process (no shutdown code runs, whatever it held in memory is gone),
// keeps it down for down, and starts it again.
func (d *daemon) crash(down time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.alive(); err != nil {
		return err
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.running = false
	d.kills++
	time.Sleep(down)
	return d.start()
}

// stop SIGTERMs the process, which must end cleanly (status 0) within 30 s.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.alive(); err != nil {
		d.running = false
		t.Error(err)
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.err != nil {
			t.Errorf("%s: %v after SIGTERM\n%s", d.name, d.err, d.logTail())
		}
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("%s did not stop within 30 s of SIGTERM\n%s", d.name, d.logTail())
	}
	d.running = false
}

// abandon SIGKILLs the process if it still runs: a failed drill leaves nothing behind.
func (d *daemon) abandon() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running {
		return
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.running = false
}

// logTail is the end of the process's log, for failure messages.
func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
