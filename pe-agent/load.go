package peagent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

func contextBackground() context.Context { return context.Background() }

// maxLoad is the wire value of 100 % load.
const maxLoad = math.MaxUint32

// scaleFraction maps a fraction 0..1 (clamped) to the 32-bit wire scale.
func scaleFraction(f float64) uint32 {
	switch {
	case !(f > 0): // also NaN
		return 0
	case f >= 1:
		return maxLoad
	}
	return uint32(math.Round(f * maxLoad))
}

// ScaleLoad maps a raw load value to the policy's 32-bit load, where
// fullScale means 100 %; values outside 0..fullScale saturate.
func ScaleLoad(raw, fullScale float64) uint32 {
	if fullScale <= 0 {
		return 0
	}
	return scaleFraction(raw / fullScale)
}

// tcpEstablished is the kernel's TCP_ESTABLISHED state as printed in /proc/net/tcp.
const tcpEstablished = 0x01

// CountEstablished counts the ESTABLISHED sockets in a /proc/net/tcp or
// /proc/net/tcp6 text whose local endpoint is backend: the port must match;
// the address must match too unless backend's address is unspecified.
// An IPv4 backend also matches IPv4-mapped IPv6 sockets. Malformed lines are
// an error.
func CountEstablished(r io.Reader, backend netip.AddrPort) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	n, line := 0, 0
	want := backend.Addr().Unmap()
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if line == 1 && len(f) > 0 && f[0] == "sl" {
			continue // header
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 {
			return 0, fmt.Errorf("line %d: %d fields, want at least 4", line, len(f))
		}
		local, err := parseProcAddr(f[1])
		if err != nil {
			return 0, fmt.Errorf("line %d: local address: %w", line, err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return 0, fmt.Errorf("line %d: state %q: %w", line, f[3], err)
		}
		if st != tcpEstablished || local.Port() != backend.Port() {
			continue
		}
		if want.IsValid() && !want.IsUnspecified() && local.Addr().Unmap() != want {
			continue
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return n, nil
}

// parseProcAddr decodes "0100007F:1F90" (address in host byte order per
// 32-bit word, which is little-endian on every platform Go supports here).
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q: no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: port: %w", s, err)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("%q: bad address", s)
	}
	for i := 0; i < len(raw); i += 4 { // each 32-bit word is little-endian
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	var a netip.Addr
	if len(raw) == 4 {
		a = netip.AddrFrom4([4]byte(raw))
	} else {
		a = netip.AddrFrom16([16]byte(raw))
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// procNetTCP lists the files read by BackendConnections.
var procNetTCP = []string{"/proc/net/tcp", "/proc/net/tcp6"}

// BackendConnections counts the established TCP connections whose local end
// is backend, over /proc/net/tcp and /proc/net/tcp6 of the current network
// namespace. A missing tcp6 file (IPv6 disabled) is not an error.
func BackendConnections(backend netip.AddrPort) (int, error) {
	total := 0
	for i, name := range procNetTCP {
		b, err := os.ReadFile(name)
		if err != nil {
			if i > 0 && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, err
		}
		n, err := CountEstablished(bytes.NewReader(b), backend)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		total += n
	}
	return total, nil
}

// commandValue runs a shell command and parses the first number it prints.
func commandValue(ctx context.Context, command string, timeout time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("load command: %w", err)
	}
	if len(out) > 4096 {
		out = out[:4096]
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return 0, errors.New("load command printed nothing")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("load command printed %q, not a non-negative number", f[0])
	}
	return v, nil
}

// loadReader samples one element's raw load value.
type loadReader struct {
	cfg     LoadConfig
	backend netip.AddrPort
	timeout time.Duration
}

// read returns the raw value per the configured source.
func (r loadReader) read(ctx context.Context) (float64, error) {
	switch r.cfg.Source {
	case LoadConnections:
		n, err := BackendConnections(r.backend)
		return float64(n), err
	case LoadCommand:
		return commandValue(ctx, r.cfg.Command, r.timeout)
	case LoadFixed:
		return r.cfg.Value, nil
	}
	return 0, nil
}

// loadGate decides when a new load value is worth a re-registration: the
// change since the last reported value exceeds step (a fraction of full
// load) and at least minInterval passed since the last report.
type loadGate struct {
	step        uint32
	minInterval time.Duration
	reported    uint32
	last        time.Time
	ever        bool
}

func newLoadGate(step float64, minInterval time.Duration) *loadGate {
	return &loadGate{step: scaleFraction(step), minInterval: minInterval}
}

// offer reports whether load should be sent now; if so it is recorded.
func (g *loadGate) offer(load uint32, now time.Time) bool {
	if g.ever {
		diff := load - g.reported
		if load < g.reported {
			diff = g.reported - load
		}
		if diff <= g.step && !(diff > 0 && g.step == 0) {
			return false
		}
		if g.minInterval > 0 && now.Sub(g.last) < g.minInterval {
			return false
		}
	}
	g.reported, g.last, g.ever = load, now, true
	return true
}
