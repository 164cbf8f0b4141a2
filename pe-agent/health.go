package peagent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"syscall"
	"time"
)

// CheckBackend runs one health check of the backend at addr: the command if
// cfg.Command is set (exit status 0 = healthy), else a TCP connect, then the
// optional Send and Expect exchange. The whole check is bounded by
// cfg.Timeout (and ctx). A nil error means healthy.
func CheckBackend(ctx context.Context, addr string, cfg HealthConfig) error {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if cfg.Command != "" {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cfg.Command)
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("health command: %w", err)
		}
		return nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if cfg.Send == "" && cfg.Expect == "" {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if cfg.Send != "" {
		if _, err := io.WriteString(c, cfg.Send); err != nil {
			return fmt.Errorf("health send: %w", err)
		}
	}
	if cfg.Expect == "" {
		return nil
	}
	want := []byte(cfg.Expect)
	// Read until the expected bytes show up; bound memory by keeping only
	// the last len(want)-1 bytes of what was seen.
	var window []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		window = append(window, buf[:n]...)
		if bytes.Contains(window, want) {
			return nil
		}
		if keep := len(want) - 1; len(window) > keep {
			window = append(window[:0], window[len(window)-keep:]...)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("health expect: %q not received before EOF", cfg.Expect)
			}
			return fmt.Errorf("health expect: %q not received: %w", cfg.Expect, err)
		}
	}
}

// checkResult is the outcome of one health check.
type checkResult uint8

const (
	checkOK      checkResult = iota
	checkFailed              // timeout, command failure, unexpected reply, reset
	checkRefused             // the connect was refused: nothing listens on the port
)

// classify maps CheckBackend's error to a checkResult. A refused connect
// means that no process listens on the backend's port (it died, or is
// being restarted): that is certain, so it is not left to the fall count.
func classify(err error) checkResult {
	switch {
	case err == nil:
		return checkOK
	case errors.Is(err, syscall.ECONNREFUSED):
		return checkRefused
	}
	return checkFailed
}

// healthState applies rise and fall counts to check results. The first
// result sets the initial state directly; afterwards a down backend needs
// rise consecutive successes to be up and an up backend fall consecutive
// failures to be down, so the state never changes faster than that. A
// refused connect marks an up backend down at once: the backend process is
// gone, and every further second it stays registered sends pool users to a
// closed port. It is not safe for concurrent use.
type healthState struct {
	rise, fall int
	known      bool
	up         bool
	streak     int // consecutive results contrary to the current state
}

func newHealthState(rise, fall int) *healthState {
	return &healthState{rise: max(rise, 1), fall: max(fall, 1)}
}

// observe records one check result and reports whether the state changed.
func (h *healthState) observe(r checkResult) (changed bool) {
	ok := r == checkOK
	if !h.known {
		h.known, h.up, h.streak = true, ok, 0
		return true
	}
	if ok == h.up {
		h.streak = 0
		return false
	}
	h.streak++
	need := h.fall
	if !h.up {
		need = h.rise
	}
	if h.streak < need && !(h.up && r == checkRefused) {
		return false
	}
	h.up, h.streak = ok, 0
	return true
}
