package proxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rserpool/rserpool/internal/netnstest"
	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/pucache/pucachetest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Transparent interception, in three network namespaces of the test's own:
// a legacy client (client ns) keeps connecting to its old service address;
// nftables in the proxy's namespace (the test's) sends those connections
// to the proxy (REDIRECT, read back with SO_ORIGINAL_DST, and TPROXY with
// IP_TRANSPARENT), which picks the pool by the original destination and
// connects to a PE in the PE ns. IPv4 and IPv6; both engines. The PE
// reads a PROXY v1 header, which carries the original destination, and
// reports the source address it sees: the proxy's, or the client's with
// transparent_source (loop engine; 203.0.113.30 and 2001:db8:99::30).
//
//	client ns              proxy ns (the test)             PE ns
//	192.0.2.2  ── veth ──  192.0.2.1 │ 198.51.100.1 ── veth ── 198.51.100.2
//	2001:db8:1::2          2001:db8:1::1 │ 2001:db8:2::1        2001:db8:2::2
//
// Service addresses (routed to the proxy ns, owned by nobody):
// 203.0.113.10:80 and [2001:db8:99::10]:80 (redirect), 203.0.113.20:80 and
// [2001:db8:99::20]:80 (tproxy); 203.0.113.11:80 is redirected but mapped
// to no pool.
func TestInterception(t *testing.T) {
	if !netnstest.Run(t, []string{"ip", "link", "set", "lo", "up"}, []string{"nft", "list", "tables"}) {
		return
	}
	cli, pe := fmt.Sprintf("rsp-cli-%d", os.Getpid()), fmt.Sprintf("rsp-pe-%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{cli, pe} {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	link := func(ns, here, there, v4here, v4there, v6here, v6there string) {
		run("ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", ns)
		run("ip", "addr", "add", v4here+"/24", "dev", here)
		run("ip", "addr", "add", v6here+"/64", "dev", here, "nodad")
		run("ip", "link", "set", here, "up")
		run("ip", "-n", ns, "addr", "add", v4there+"/24", "dev", there)
		run("ip", "-n", ns, "addr", "add", v6there+"/64", "dev", there, "nodad")
		run("ip", "-n", ns, "link", "set", there, "up")
		run("ip", "-n", ns, "route", "add", "default", "via", v4here)
		run("ip", "-n", ns, "-6", "route", "add", "default", "via", v6here)
	}
	link(cli, "vc0", "vc1", "192.0.2.1", "192.0.2.2", "2001:db8:1::1", "2001:db8:1::2")
	link(pe, "vp0", "vp1", "198.51.100.1", "198.51.100.2", "2001:db8:2::1", "2001:db8:2::2")

	// The PEs: PROXY header, then "<name>:<line>".
	hdrs := make(chan string, 16)
	pe4, _ := inNetns(t, pe, func() (net.Listener, error) { return listenPE(t, "198.51.100.2:0", "pe4", hdrs), nil })
	pe6, _ := inNetns(t, pe, func() (net.Listener, error) { return listenPE(t, "[2001:db8:2::2]:0", "pe6", hdrs), nil })
	r := pucachetest.Start(t)
	r.SetPool("P4", wire.PolicyRoundRobin, pucachetest.PE(1, pe4.Addr().(*net.TCPAddr).AddrPort(), wire.PolicyRoundRobin, 0))
	r.SetPool("P6", wire.PolicyRoundRobin, pucachetest.PE(2, pe6.Addr().(*net.TCPAddr).AddrPort(), wire.PolicyRoundRobin, 0))
	c := startCache(t, r.Addr())

	for _, engine := range []string{proxy.EngineLoop, proxy.EngineGoroutine} {
		t.Run(engine, func(t *testing.T) {
			listeners := []proxy.ListenerConfig{
				{Name: "r4", Listen: transport.MustParseAddr("0.0.0.0:0"), Pool: "P4", Intercept: "203.0.113.10:80"},
				{Name: "r6", Listen: transport.MustParseAddr("[::]:0"), Pool: "P6", Intercept: "[2001:db8:99::10]:80"},
				{Name: "t4", Listen: transport.MustParseAddr("127.0.0.1:0"), Pool: "P4", TProxy: true,
					InterceptPools: map[string]wire.PoolHandle{"203.0.113.20:80": "P4", "[2001:db8:99::20]:80": "P6"}},
				{Name: "t6", Listen: transport.MustParseAddr("[::1]:0"), Pool: "P6", TProxy: true, Intercept: "[2001:db8:99::20]:80"},
			}
			if engine == proxy.EngineLoop {
				listeners = append(listeners,
					proxy.ListenerConfig{Name: "s4", Listen: transport.MustParseAddr("127.0.0.2:0"), Pool: "P4", TProxy: true, TransparentSource: true,
						Intercept: "203.0.113.30:80"},
					proxy.ListenerConfig{Name: "s6", Listen: transport.MustParseAddr("[2001:db8:1::1]:0"), Pool: "P6", TProxy: true, TransparentSource: true,
						Intercept: "[2001:db8:99::30]:80"})
			}
			for i := range listeners {
				listeners[i].Engine, listeners[i].ProxyProtocol = engine, "v1"
			}
			p, err := proxy.New(&proxy.Config{Listeners: listeners}, proxy.Options{Cache: c})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			port := func(listen string) string {
				_, port, _ := net.SplitHostPort(p.Addr(transport.MustParseAddr(listen)).String())
				return port
			}
			table := "icpt" + engine
			run("nft", "add", "table", "inet", table)
			t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", table).Run() })
			run("nft", "add chain inet "+table+" nat { type nat hook prerouting priority dstnat ; }")
			run("nft", "add rule inet "+table+" nat ip daddr { 203.0.113.10, 203.0.113.11 } tcp dport 80 redirect to :"+port("0.0.0.0:0"))
			run("nft", "add rule inet "+table+" nat ip6 daddr 2001:db8:99::10 tcp dport 80 redirect to :"+port("[::]:0"))
			run("nft", "add chain inet "+table+" tp { type filter hook prerouting priority mangle ; }")
			// TPROXY hands the connection to the transparent listener,
			// whatever address it is bound to.
			run("nft", "add rule inet "+table+" tp ip daddr 203.0.113.20 tcp dport 80 tproxy ip to 127.0.0.1:"+port("127.0.0.1:0")+" meta mark set 1 accept")
			run("nft", "add rule inet "+table+" tp ip6 daddr 2001:db8:99::20 tcp dport 80 tproxy ip6 to [::1]:"+port("[::1]:0")+" meta mark set 1 accept")
			if engine == proxy.EngineLoop {
				// transparent_source: the PE's answers to the client's
				// address belong to the proxy's transparent sockets.
				run("nft", "add rule inet "+table+" tp ip daddr 203.0.113.30 tcp dport 80 tproxy ip to 127.0.0.2:"+port("127.0.0.2:0")+" meta mark set 1 accept")
				run("nft", "add rule inet "+table+" tp ip6 daddr 2001:db8:99::30 tcp dport 80 tproxy ip6 to [2001:db8:1::1]:"+port("[2001:db8:1::1]:0")+" meta mark set 1 accept")
				run("nft", "add rule inet "+table+" tp meta l4proto tcp socket transparent 1 meta mark set 1 accept")
			}
			// Marked packets are local: the policy routing TPROXY needs.
			for _, fam := range []string{"-4", "-6"} {
				exec.Command("ip", fam, "rule", "add", "fwmark", "1", "lookup", "100").Run()
				exec.Command("ip", fam, "route", "add", "local", map[string]string{"-4": "0.0.0.0/0", "-6": "::/0"}[fam], "dev", "lo", "table", "100").Run()
			}

			type check struct{ dst, want, src, from string }
			checks := []check{
				{"203.0.113.10:80", "pe4", "192.0.2.2", "198.51.100.1"},
				{"[2001:db8:99::10]:80", "pe6", "2001:db8:1::2", "2001:db8:2::1"},
				{"203.0.113.20:80", "pe4", "192.0.2.2", "198.51.100.1"},
				{"[2001:db8:99::20]:80", "pe6", "2001:db8:1::2", "2001:db8:2::1"},
			}
			if engine == proxy.EngineLoop {
				// transparent_source: the PE sees the client's address.
				checks = append(checks,
					check{"203.0.113.30:80", "pe4", "192.0.2.2", "192.0.2.2"},
					check{"[2001:db8:99::30]:80", "pe6", "2001:db8:1::2", "2001:db8:1::2"})
			}
			for _, tc := range checks {
				conn, err := inNetns(t, cli, func() (net.Conn, error) { return net.DialTimeout("tcp", tc.dst, 5*time.Second) })
				if err != nil {
					t.Fatalf("client → %s: %v", tc.dst, err)
				}
				port := conn.LocalAddr().(*net.TCPAddr).Port
				got, err := exchange(conn, "hello")
				if err != nil || got != tc.want+":hello" {
					t.Fatalf("client → %s: %q, %v; want %s:hello", tc.dst, got, err, tc.want)
				}
				// The PROXY header names the client and the address it
				// connected to, as if there were no proxy.
				dst := netip.MustParseAddrPort(tc.dst)
				fam := "TCP4"
				if dst.Addr().Is6() {
					fam = "TCP6"
				}
				wantHdr := fmt.Sprintf("PROXY %s %s %s %d 80\r\nfrom %s", fam, tc.src, dst.Addr(), port, tc.from)
				if h := <-hdrs; h != wantHdr {
					t.Errorf("client → %s: PE got header %q, want %q", tc.dst, h, wantHdr)
				}
			}
			// Redirected, but no pool serves that destination: reset (it
			// may come before the client's connect returns).
			got, err := inNetns(t, cli, func() (string, error) {
				conn, err := net.DialTimeout("tcp", "203.0.113.11:80", 5*time.Second)
				if err != nil {
					return "", err
				}
				return exchange(conn, "x")
			})
			if err == nil || !errors.Is(err, unix.ECONNRESET) {
				t.Fatalf("unmapped destination: %q, %v; want a reset", got, err)
			}
		})
	}
}

// exchange sends a line and reads the answer line, then closes conn.
func exchange(conn net.Conn, line string) (string, error) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", err
	}
	s, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

// listenPE serves "<name>:<line>" after a PROXY v1 header, sent on hdrs.
func listenPE(t *testing.T, addr, name string, hdrs chan<- string) net.Listener {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			if h, err := br.ReadString('\n'); err == nil {
				hdrs <- h + "from " + c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().String()
				if l, err := br.ReadString('\n'); err == nil {
					io.WriteString(c, name+":"+l)
				}
			}
			c.Close()
		}
	}()
	return ln
}

// inNetns runs f with its thread in the named network namespace, so that
// the sockets f creates live there.
func inNetns[T any](t *testing.T, name string, f func() (T, error)) (T, error) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // this thread must not run anything else in the wrong namespace
		}
	}()
	return f()
}
