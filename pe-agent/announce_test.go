package peagent

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func TestAnnounceAddrs(t *testing.T) {
	src := netip.MustParseAddrPort("10.0.0.9:40000")
	ip := netip.MustParseAddr
	tests := []struct {
		name string
		sa   wire.ServerAnnounce
		want []string
	}{
		{"no transports: SCTP at the source", wire.ServerAnnounce{}, []string{"sctp://10.0.0.9:3863"}},
		{"tcp and sctp", wire.ServerAnnounce{Transports: []wire.Transport{
			{Type: wire.TransportTCP, Port: 3863, Addrs: []netip.Addr{ip("10.0.0.1"), ip("fd00::1")}},
			{Type: wire.TransportSCTP, Port: 3863, Addrs: []netip.Addr{ip("10.0.0.1")}},
		}}, []string{"tcp://10.0.0.1:3863", "tcp://[fd00::1]:3863", "sctp://10.0.0.1:3863"}},
		{"unusable entries skipped", wire.ServerAnnounce{Transports: []wire.Transport{
			{Type: wire.TransportUDP, Port: 3863, Addrs: []netip.Addr{ip("10.0.0.1")}},
			{Type: wire.TransportTCP, Port: 0, Addrs: []netip.Addr{ip("10.0.0.1")}},
			{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{ip("0.0.0.0"), ip("239.1.1.1")}},
		}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, a := range announceAddrs(&tt.sa, src) {
				got = append(got, a.String())
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// TestElementHuntsLearnedRegistrar: the static registrar is down, so the
// element registers at an address learned from an announce.
func TestElementHuntsLearnedRegistrar(t *testing.T) {
	f := newFakeRegistrar(t)
	el, err := NewElement(testPEConfig(transport.MustParseAddr(closedPort(t))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEl(t, el)
	el.LearnRegistrar(f.addr, time.Minute)
	el.Start()
	c := f.accept()
	reg := nextOf[*wire.Registration](f)
	send(t, c, &wire.RegistrationResponse{PoolHandle: reg.PoolHandle, ID: reg.Element.ID})
	waitState(t, el, "registered at the learned registrar", func(s State) bool { return s.Registered && s.HomeAddr == f.addr })
}

// TestElementHearsAnnounces sends a real ASAP Server Announce by multicast
// on loopback; it skips where the host cannot loop multicast back.
func TestElementHearsAnnounces(t *testing.T) {
	group := "239.0.0.77:" + strings.TrimPrefix(closedPort(t), "127.0.0.1:")
	probe, err := transport.ListenMulticast(group, "")
	if err != nil {
		t.Skipf("no multicast here: %v", err)
	}
	defer probe.Close()
	snd, err := transport.NewMulticastSender(group, "", 1, true)
	if err != nil {
		t.Skipf("no multicast sender here: %v", err)
	}
	defer snd.Close()
	if err := snd.Send([]byte("probe")); err != nil {
		t.Skipf("multicast send: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 64)
		_, _, err := probe.ReadFrom(buf)
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Skipf("multicast receive: %v", err)
		}
	case <-time.After(time.Second):
		probe.Close()
		<-got
		t.Skip("multicast is not looped back on this host")
	}

	f := newFakeRegistrar(t)
	cfg := testPEConfig(transport.MustParseAddr(closedPort(t)))
	cfg.AnnounceGroup = group
	el, err := NewElement(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEl(t, el)
	ap := netip.MustParseAddrPort(f.addr.HostPort())
	msg, err := (&wire.ServerAnnounce{ServerID: 7, Transports: []wire.Transport{
		{Type: wire.TransportTCP, Port: ap.Port(), Addrs: []netip.Addr{ap.Addr()}}}}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	el.Start()
	// Announce until the element connects (it hunts every retry interval).
	var c transport.Conn
	deadline := time.After(10 * time.Second)
	for c == nil {
		if err := snd.Send(msg); err != nil {
			t.Fatal(err)
		}
		select {
		case c = <-f.conn:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("element never connected to the announced registrar")
		}
	}
	reg := nextOf[*wire.Registration](f)
	send(t, c, &wire.RegistrationResponse{PoolHandle: reg.PoolHandle, ID: reg.Element.ID})
	waitState(t, el, "registered via announce", func(s State) bool { return s.Registered && s.HomeAddr == f.addr })
}
