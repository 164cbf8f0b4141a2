package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a child process the harness owns: started once, stopped and waited
// for by stop.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status; read only after done
}

// startProc starts argv with its stdout and stderr going to dir/name.log.
// When first is not nil, the first line of stdout is also sent on it.
func startProc(dir, name string, first chan<- string, argv ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = logf
	cmd.Stdout = logf
	if first != nil {
		cmd.Stdout = &firstLineWriter{w: logf, line: first}
	}
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { // owned by p: stop waits for done
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// procGroup owns the child processes of one harness run: started with
// start, stopped in reverse start order by stopAll.
type procGroup struct {
	dir   string
	procs []*proc
}

func (g *procGroup) start(name string, first chan<- string, argv ...string) (*proc, error) {
	p, err := startProc(g.dir, name, first, argv...)
	if err == nil {
		g.procs = append(g.procs, p)
	}
	return p, err
}

// stopAll stops every process (a stopped one is continued first).
func (g *procGroup) stopAll() {
	for i := len(g.procs) - 1; i >= 0; i-- {
		g.procs[i].cmd.Process.Signal(syscall.SIGCONT)
		g.procs[i].stop()
	}
}

// firstLineWriter passes everything to w and sends the first complete line
// on line (buffered, capacity 1). exec.Cmd calls Write from one goroutine.
type firstLineWriter struct {
	w    io.Writer
	buf  []byte
	line chan<- string
	sent bool
}

func (f *firstLineWriter) Write(b []byte) (int, error) {
	if !f.sent {
		f.buf = append(f.buf, b...)
		if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
			f.line <- string(f.buf[:i])
			f.sent, f.buf = true, nil
		} else if len(f.buf) > 4096 {
			f.sent, f.buf = true, nil
		}
	}
	return f.w.Write(b)
}

// stop sends SIGTERM, waits up to 5 s, then kills; it returns once the process
// has exited.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// logTail returns the last lines of the process's log, for error messages.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	return lastLines(string(b), 15)
}

// waitListening waits for the backend's "listening ADDR" line.
func waitListening(ctx context.Context, p *proc, first <-chan string) (string, error) {
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case l := <-first:
		addr, found := strings.CutPrefix(l, "listening ")
		if !found {
			return "", fmt.Errorf("%s: unexpected first line %q", p.name, l)
		}
		return addr, nil
	case <-p.done:
		return "", fmt.Errorf("%s exited (%v); log %s:\n%s", p.name, p.err, p.logPath, p.logTail())
	case <-t.C:
		return "", fmt.Errorf("%s: not ready after 10s", p.name)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// freePort returns a loopback address whose port was free a moment ago. A
// daemon given that address may still lose a race for it; the harness then
// fails with the daemon's log.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady waits until probe succeeds against addr, the process exits, or
// the timeout passes. External daemons give no readiness signal, so this
// retries the probe every 50 ms.
func waitReady(ctx context.Context, p *proc, addr string, timeout time.Duration, probe func(context.Context, string) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = probe(ctx, addr); last == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before it was ready; log %s:\n%s", p.name, p.err, p.logPath, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s after %v: %v; log %s:\n%s", p.name, addr, timeout, last, p.logPath, p.logTail())
		}
	}
}

// probeListen succeeds once addr accepts a TCP connection.
func probeListen(ctx context.Context, addr string) error {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// probeEcho succeeds once an echo exchange through addr reaches the backend.
func probeEcho(ctx context.Context, addr string) error {
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte{modeEcho, 'p', 'i', 'n', 'g'}); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("echo answered with other bytes")
	}
	return nil
}

// procCPU returns the CPU time (user + system, seconds) that process pid
// has used so far, all its threads included.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	var ut, st float64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, err
	}
	return (ut + st) / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc times (100 on Linux).
const clockTicks = 100

// straceCount runs load while strace counts the system calls of process
// pid (all threads) and returns their total.
func straceCount(ctx context.Context, dir string, pid int, load func() (result, error)) (int64, result, error) {
	out := filepath.Join(dir, fmt.Sprintf("strace-%d.txt", pid))
	cmd := exec.CommandContext(ctx, "strace", "-c", "-f", "-p", fmt.Sprint(pid), "-o", out)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return 0, result{}, err
	}
	time.Sleep(500 * time.Millisecond) // strace attaches to every thread
	res, lerr := load()
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if lerr != nil {
		return 0, res, lerr
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return 0, res, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[len(f)-1] == "total" {
			var n int64
			if _, err := fmt.Sscan(f[3], &n); err != nil {
				return 0, res, fmt.Errorf("strace total %q: %w", l, err)
			}
			return n, res, nil
		}
	}
	return 0, res, fmt.Errorf("no total in strace output %s", out)
}
