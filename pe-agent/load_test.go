package peagent

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A /proc/net/tcp sample: a listener on 127.0.0.1:8080 (0x1F90) with two
// established server-side sockets, one in TIME_WAIT, the client side of one
// connection (remote port 8080), and an established socket on another port.
const procTCPSample = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 1002 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:D432 01 00000000:00000000 00:00000000 00000000  1000        0 1003 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:D433 06 00000000:00000000 00:00000000 00000000  1000        0 1004 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 1005 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:0016 0100007F:D499 01 00000000:00000000 00:00000000 00000000  1000        0 1006 1 0000000000000000 20 4 30 10 -1
   6: 0200007F:1F90 0100007F:D434 01 00000000:00000000 00:00000000 00000000  1000        0 1007 1 0000000000000000 20 4 30 10 -1
`

// tcp6: one IPv4-mapped ::ffff:127.0.0.1:8080 socket and one [::1]:8080.
const procTCP6Sample = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D440 01 00000000:00000000 00:00000000 00000000  1000        0 2001 1 0000000000000000 20 4 30 10 -1
   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D441 01 00000000:00000000 00:00000000 00000000  1000        0 2002 1 0000000000000000 20 4 30 10 -1
`

func TestCountEstablished(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		backend string
		want    int
	}{
		{"v4 exact address", procTCPSample, "127.0.0.1:8080", 2},
		{"v4 any address", procTCPSample, "0.0.0.0:8080", 3},
		{"other port", procTCPSample, "127.0.0.1:22", 1},
		{"unused port", procTCPSample, "127.0.0.1:9", 0},
		{"v6 mapped matches v4 backend", procTCP6Sample, "127.0.0.1:8080", 1},
		{"v6 loopback", procTCP6Sample, "[::1]:8080", 1},
		{"v6 any", procTCP6Sample, "[::]:8080", 2},
		{"empty", "", "127.0.0.1:8080", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CountEstablished(strings.NewReader(tt.text), netip.MustParseAddrPort(tt.backend))
			if err != nil || got != tt.want {
				t.Errorf("CountEstablished = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestCountEstablishedMalformed(t *testing.T) {
	for _, text := range []string{
		"   0: 0100007F\n",
		"   0: 0100007F:1F90 00000000:0000\n",
		"   0: 0100007Z:1F90 00000000:0000 01\n",
		"   0: 0100007F:XXXX 00000000:0000 01\n",
		"   0: 0100007F:1F90 00000000:0000 ZZ\n",
		"   0: 01007F:1F90 00000000:0000 01\n",
	} {
		if _, err := CountEstablished(strings.NewReader(text), netip.MustParseAddrPort("127.0.0.1:8080")); err == nil {
			t.Errorf("CountEstablished(%q): no error", text)
		}
	}
}

// TestBackendConnectionsLive opens real connections to a loopback listener
// and watches the count from /proc/net/tcp follow them.
func TestBackendConnectionsLive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	backend := netip.MustParseAddrPort(ln.Addr().String())
	waitCount := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n, err := BackendConnections(backend)
			if err != nil {
				t.Fatal(err)
			}
			if n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("BackendConnections = %d, want %d", n, want)
			}
			time.Sleep(10 * time.Millisecond) // polling the kernel table; no event to wait on
		}
	}
	waitCount(0)
	var clients, servers []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		clients, servers = append(clients, c), append(servers, s)
	}
	waitCount(3)
	for i := range 2 {
		servers[i].Close()
		clients[i].Close()
	}
	waitCount(1)
	servers[2].Close()
	clients[2].Close()
	waitCount(0)
}

func TestScaleLoad(t *testing.T) {
	tests := []struct {
		raw, full float64
		want      uint32
	}{
		{0, 100, 0},
		{100, 100, 0xffffffff},
		{250, 100, 0xffffffff},
		{50, 100, 0x80000000},
		{-3, 100, 0},
		{1, 0, 0},
	}
	for _, tt := range tests {
		if got := ScaleLoad(tt.raw, tt.full); got != tt.want {
			t.Errorf("ScaleLoad(%v, %v) = %#x, want %#x", tt.raw, tt.full, got, tt.want)
		}
	}
}

func TestLoadGate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	g := newLoadGate(0.1, 5*time.Second)
	steps := []struct {
		load float64
		at   time.Duration
		want bool
	}{
		{0.0, 0, true},                  // first value always goes out
		{0.05, 10 * time.Second, false}, // below the step
		{0.3, 1 * time.Second, false},   // above the step but rate-limited (1 s after last)
		{0.3, 6 * time.Second, true},    // after min_interval
		{0.35, 20 * time.Second, false}, // 0.05 from the reported 0.3
		{0.1, 30 * time.Second, true},   // downwards too
	}
	for i, s := range steps {
		if got := g.offer(scaleFraction(s.load), t0.Add(s.at)); got != s.want {
			t.Errorf("step %d: offer(%v) = %v, want %v", i, s.load, got, s.want)
		}
	}
}

func TestCommandValue(t *testing.T) {
	v, err := commandValue(t.Context(), "echo 42.5", time.Second)
	if err != nil || v != 42.5 {
		t.Errorf("commandValue = %v, %v; want 42.5", v, err)
	}
	for _, cmd := range []string{"echo abc", "true", "echo -1", "exit 1", "echo NaN"} {
		if _, err := commandValue(t.Context(), cmd, time.Second); err == nil {
			t.Errorf("commandValue(%q): no error", cmd)
		}
	}
}

// BenchmarkCountEstablished parses a /proc/net/tcp of 10,000 sockets, the
// work of one `connections` load sample on a busy host.
func BenchmarkCountEstablished(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
	for i := range 10000 {
		fmt.Fprintf(&sb, "%4d: 0100007F:1F90 0100007F:%04X 01 00000000:00000000 00:00000000 00000000  1000        0 %d 1 0000000000000000 20 4 30 10 -1\n", i, 1024+i%60000, 1000+i)
	}
	text := sb.String()
	backend := netip.MustParseAddrPort("127.0.0.1:8080")
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		n, err := CountEstablished(strings.NewReader(text), backend)
		if err != nil || n != 10000 {
			b.Fatal(n, err)
		}
	}
}

// FuzzCountEstablished: arbitrary text never panics, and a count is never
// negative or larger than the number of lines.
func FuzzCountEstablished(f *testing.F) {
	f.Add(procTCPSample)
	f.Add(procTCP6Sample)
	f.Add("   0: 0100007F:1F90 00000000:0000 01\n")
	f.Fuzz(func(t *testing.T, text string) {
		n, err := CountEstablished(strings.NewReader(text), netip.MustParseAddrPort("127.0.0.1:8080"))
		if err == nil && (n < 0 || n > strings.Count(text, "\n")+1) {
			t.Fatalf("count %d for %d lines", n, strings.Count(text, "\n")+1)
		}
	})
}
