package peagent

import (
	"bufio"
	"bytes"
	"context"
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
	anyAddr := !want.IsValid() || want.IsUnspecified()
	var f [4][]byte
	for sc.Scan() {
		line++
		nf := fields(sc.Bytes(), &f)
		if nf == 0 || (line == 1 && string(f[0]) == "sl") {
			continue // blank line or header
		}
		if nf < 4 {
			return 0, fmt.Errorf("line %d: %d fields, want at least 4", line, nf)
		}
		local, err := parseProcAddr(f[1])
		if err != nil {
			return 0, fmt.Errorf("line %d: local address: %w", line, err)
		}
		st, ok := parseHex(f[3], 8)
		if !ok {
			return 0, fmt.Errorf("line %d: bad state %q", line, f[3])
		}
		if st != tcpEstablished || local.Port() != backend.Port() {
			continue
		}
		if !anyAddr && local.Addr().Unmap() != want {
			continue
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return n, nil
}

// fields stores up to len(f) space-separated fields of b in f (slices of
// b, no allocation) and returns how many it found.
func fields(b []byte, f *[4][]byte) int {
	n := 0
	for i := 0; i < len(b) && n < len(f); {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		j := i
		for j < len(b) && b[j] != ' ' && b[j] != '\t' {
			j++
		}
		if j > i {
			f[n] = b[i:j]
			n++
		}
		i = j
	}
	return n
}

// parseHex parses an unsigned hexadecimal number of at most bits bits.
func parseHex(b []byte, bits int) (uint64, bool) {
	if len(b) == 0 || len(b) > bits/4 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		d, ok := hexDigit(c)
		if !ok {
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseProcAddr decodes "0100007F:1F90": the address as 32-bit words in
// host byte order (little-endian on every platform Go supports here), then
// the port.
func parseProcAddr(s []byte) (netip.AddrPort, error) {
	i := bytes.IndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: no port", s)
	}
	h, p := s[:i], s[i+1:]
	port, ok := parseHex(p, 16)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q: bad port", s)
	}
	if len(h) != 8 && len(h) != 32 {
		return netip.AddrPort{}, fmt.Errorf("%q: bad address", s)
	}
	var raw [16]byte
	for w := 0; w < len(h)/8; w++ {
		v, ok := parseHex(h[w*8:w*8+8], 32)
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("%q: bad address", s)
		}
		raw[w*4], raw[w*4+1], raw[w*4+2], raw[w*4+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	var a netip.Addr
	if len(h) == 8 {
		a = netip.AddrFrom4([4]byte(raw[:4]))
	} else {
		a = netip.AddrFrom16(raw)
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
	cfg     LoadReporting
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
