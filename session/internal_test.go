package session

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/wire"
)

// FuzzControl feeds arbitrary control-channel messages to both ends: they
// never panic, keep cookies and cards within their bounds, and a PE
// delivers a cookie only for a Cookie Echo.
func FuzzControl(f *testing.F) {
	for _, m := range []wire.Message{
		&wire.Cookie{Cookie: []byte("<PP-TD1>\x00\x00\x00\x00\x00\x00\x00\x02")},
		&wire.CookieEcho{Cookie: bytes.Repeat([]byte{9}, 40)},
		&wire.BusinessCard{PoolHandle: "P", Elements: []wire.PoolElement{{ID: 1, User: wire.Transport{
			Type: wire.TransportTCP, Port: 1, Use: wire.UseDataAndControl, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}}}},
	} {
		b, err := m.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &Session{cfg: (&Config{MaxCookieSize: 24, MaxCardElements: 2}).withDefaults()}
		s.log = s.cfg.Logger
		s.control(b)
		if len(s.cookie) > 24 || len(s.card) > 2 {
			t.Fatalf("cookie %d bytes, card %d PEs", len(s.cookie), len(s.card))
		}
		for _, c := range s.card {
			if !c.card || c.pe.ID == 0 || c.pe.Addr == "" {
				t.Fatalf("card target %+v", c)
			}
		}
		srv, err := NewServer(ServerConfig{Element: peagent.PEConfig{PoolHandle: "F"}, Handler: func(context.Context, *Peer) {}, MaxCookieSize: 24, MaxCardElements: 2})
		if err != nil {
			t.Fatal(err)
		}
		p := &Peer{srv: srv, log: srv.log}
		cookie, err := p.control(b, true)
		m, perr := wire.ParseASAP(b)
		_, isEcho := m.(*wire.CookieEcho)
		switch {
		case err != nil && !errors.Is(err, ErrCookieTooLarge):
			t.Fatalf("control: %v", err)
		case cookie != nil && (perr != nil || !isEcho || len(cookie) > 24):
			t.Fatalf("delivered a cookie of %d bytes from %v (%v)", len(cookie), m, perr)
		case p.card != nil && len(p.card.Elements) > 2:
			t.Fatalf("kept a card of %d PEs", len(p.card.Elements))
		}
	})
}

func TestUserTransport(t *testing.T) {
	tcp, err := userTransport(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 4000})
	if err != nil || tcp.Type != wire.TransportTCP || tcp.Port != 4000 || tcp.Use != wire.UseDataAndControl ||
		len(tcp.Addrs) != 1 || tcp.Addrs[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("%+v, %v", tcp, err)
	}
	sctp, err := userTransport(sctpAddr("192.0.2.1/[2001:db8::1]:5000"))
	if err != nil || sctp.Type != wire.TransportSCTP || sctp.Port != 5000 || len(sctp.Addrs) != 2 ||
		sctp.Addrs[1] != netip.MustParseAddr("2001:db8::1") {
		t.Fatalf("%+v, %v", sctp, err)
	}
	for _, bad := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4zero, Port: 4000},
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 0},
		sctpAddr("0.0.0.0:1"),
		sctpAddr("nonsense"),
	} {
		if _, err := userTransport(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// sctpAddr stands for an SCTP listener's address in its printed form.
type sctpAddr string

func (a sctpAddr) Network() string { return "sctp" }
func (a sctpAddr) String() string  { return string(a) }
