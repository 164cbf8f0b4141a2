// Package sdnotify speaks the systemd notify protocol: a daemon tells its
// service manager that it is ready (READY=1), reloading, or stopping, in
// one datagram of newline-separated VAR=value lines sent to the unix
// socket named by $NOTIFY_SOCKET (sd_notify(3)). The daemons add lines of
// their own with the addresses they bound (ASAP=, ADMIN=, LISTENERS=), so
// that a test or a supervisor can await one datagram instead of polling a
// file, and systemd units can use Type=notify.
//
// # Usage
//
//	err := sdnotify.Notify(sdnotify.Ready, "ADMIN=127.0.0.1:9464") // no-op without $NOTIFY_SOCKET
//
//	l, err := sdnotify.Listen(filepath.Join(dir, "notify"))        // the manager's (or a test's) side
//	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+l.Path())
//	vars, err := l.WaitReady(10 * time.Second)                   // vars["ADMIN"]
//
// # Limitations
//
// Only the state lines: no file-descriptor passing (FDSTORE), no watchdog
// pings. A socket name starting with '@' is an abstract socket, as systemd
// defines.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// States of the protocol.
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
)

// Notify sends lines (VAR=value each) to $NOTIFY_SOCKET in one datagram,
// with MAINPID. Without $NOTIFY_SOCKET it does nothing and returns nil.
func Notify(lines ...string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	msg := strings.Join(append(lines, fmt.Sprintf("MAINPID=%d", os.Getpid())), "\n")
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Listener receives notify datagrams (the service manager's side).
type Listener struct {
	c    *net.UnixConn
	path string
}

// Listen creates a notify socket at path (a new file; removed by Close).
func Listen(path string) (*Listener, error) {
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("sdnotify: %w", err)
	}
	return &Listener{c: c, path: path}, nil
}

// Path returns the value for $NOTIFY_SOCKET.
func (l *Listener) Path() string { return l.path }

// Close closes the socket.
func (l *Listener) Close() error { return l.c.Close() }

// ErrExited is returned by WaitReadyOr when the process exited first.
var ErrExited = errors.New("sdnotify: the process exited before it was ready")

// Next returns the variables of the next datagram, waiting at most d.
func (l *Listener) Next(d time.Duration) (map[string]string, error) {
	if err := l.c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, err
	}
	return l.read()
}

func (l *Listener) read() (map[string]string, error) {
	buf := make([]byte, 64<<10)
	n, err := l.c.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("sdnotify: %w", err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars, nil
}

// WaitReady returns the variables of the first datagram with READY=1,
// waiting at most d in all.
func (l *Listener) WaitReady(d time.Duration) (map[string]string, error) {
	return l.WaitReadyOr(d, nil)
}

// WaitReadyOr is WaitReady that also ends, with ErrExited, when exited is
// closed (the process died before it was ready).
func (l *Listener) WaitReadyOr(d time.Duration, exited <-chan struct{}) (map[string]string, error) {
	if err := l.c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, err
	}
	stop, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-exited:
			l.c.SetReadDeadline(time.Unix(1, 0)) // ends the read
		case <-stop:
		}
	}()
	defer func() { close(stop); <-watched }()
	for {
		vars, err := l.read()
		if err != nil {
			select {
			case <-exited:
				return nil, ErrExited
			default:
			}
			return nil, fmt.Errorf("no READY=1 within %v: %w", d, err)
		}
		if vars["READY"] == "1" {
			return vars, nil
		}
	}
}
