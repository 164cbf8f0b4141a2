package peagent

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestElementHuntsLearnedRegistrar: the static registrar is down, so the
// element registers at an address learned from an announce.
func TestElementHuntsLearnedRegistrar(t *testing.T) {
	f := newFakeRegistrar(t)
	el, err := NewElement(testPEConfig(transport.MustParseAddr(closedPort(t))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeEl(t, el)
	el.LearnRegistrar(f.addr)
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
