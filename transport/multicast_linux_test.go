package transport

import (
	"fmt"
	"github.com/rserpool/rserpool/internal/netnstest"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// inNetns runs the calling test again in a fresh network namespace whose
// loopback interface is up with multicast on, and reports its result. It
// returns true in the re-executed child, which then runs the test body. The
// namespace also has a veth pair v0 (10.9.9.1/24) - v1.
func inNetns(t *testing.T) bool {
	t.Helper()
	return netnstest.Run(t,
		[]string{"ip", "link", "set", "lo", "up", "multicast", "on"},
		[]string{"ip", "route", "add", "239.0.0.0/8", "dev", "lo"},
		[]string{"ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"},
		[]string{"ip", "link", "set", "v0", "up"},
		[]string{"ip", "link", "set", "v1", "up"},
		[]string{"ip", "addr", "add", "10.9.9.1/24", "dev", "v0"},
	)
}

func readDatagram(t *testing.T, r *MulticastReceiver) (string, netip.AddrPort) {
	t.Helper()
	r.pc.SetReadDeadline(time.Now().Add(deadline))
	buf := make([]byte, 1500)
	n, src, err := r.ReadFrom(buf)
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	return string(buf[:n]), src
}

// TestMulticastLoopback: two receivers on one host and port both get each
// announce sent on lo with loopback on.
func TestMulticastLoopback(t *testing.T) {
	if !inNetns(t) {
		return
	}
	r1, err := ListenMulticast("239.0.0.50:0", "lo")
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	port := r1.LocalAddr().(*net.UDPAddr).Port
	group := fmt.Sprintf("239.0.0.50:%d", port)
	r2, err := ListenMulticast(group, "lo")
	if err != nil {
		t.Fatalf("second receiver on the same port: %v", err)
	}
	defer r2.Close()
	s, err := NewMulticastSender(group, "lo", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send([]byte("announce")); err != nil {
		t.Fatal(err)
	}
	srcPort := s.LocalAddr().(*net.UDPAddr).Port
	for i, r := range []*MulticastReceiver{r1, r2} {
		msg, src := readDatagram(t, r)
		if msg != "announce" || src.Port() != uint16(srcPort) || !src.Addr().Is4() {
			t.Errorf("receiver %d got %q from %v, want \"announce\" from port %d", i+1, msg, src, srcPort)
		}
	}
}

// TestMulticastLoopbackOff: with loopback off, receivers on the sending host
// get nothing. (On lo itself every datagram comes back in, whatever the
// flag; so this test sends out of a veth interface.)
func TestMulticastLoopbackOff(t *testing.T) {
	if !inNetns(t) {
		return
	}
	r, err := ListenMulticast("239.0.0.51:0", "v0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	group := fmt.Sprintf("239.0.0.51:%d", r.LocalAddr().(*net.UDPAddr).Port)
	off, err := NewMulticastSender(group, "v0", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	on, err := NewMulticastSender(group, "v0", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer on.Close()
	// The datagram sent without loopback must not arrive; the one sent with
	// loopback afterwards marks the end, so nothing waits on a timer.
	if err := off.Send([]byte("hidden")); err != nil {
		t.Fatal(err)
	}
	if err := on.Send([]byte("marker")); err != nil {
		t.Fatal(err)
	}
	if msg, _ := readDatagram(t, r); msg != "marker" {
		t.Fatalf("got %q, want only the marker", msg)
	}
}

func TestMulticastBadInput(t *testing.T) {
	for _, tt := range []struct{ group, iface, want string }{
		{"10.0.0.1:3863", "", "not a multicast address"},
		{"239.0.0.50", "", "239.0.0.50"},
		{"239.0.0.50:3863", "no-such-if0", "no-such-if0"},
	} {
		if _, err := NewMulticastSender(tt.group, tt.iface, 1, true); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewMulticastSender(%q, %q) = %v, want error containing %q", tt.group, tt.iface, err, tt.want)
		}
		if _, err := ListenMulticast(tt.group, tt.iface); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ListenMulticast(%q, %q) = %v, want error containing %q", tt.group, tt.iface, err, tt.want)
		}
	}
}
