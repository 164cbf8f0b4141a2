package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"testing"

	peagent "github.com/rserpool/rserpool/pe-agent"
	"github.com/rserpool/rserpool/wire"
)

func TestSigner(t *testing.T) {
	oldKey := bytes.Repeat([]byte{1}, 16)
	newKey := bytes.Repeat([]byte{2}, 32)
	old, err := NewSigner(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := NewSigner(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	state := []byte("<PP-TD1>\x00\x00\x00\x00\x00\x00\x00\x07")
	c := cur.Sign(state)
	if len(c) != len(state)+sha256.Size || !bytes.Equal(c[:len(state)], state) {
		t.Fatalf("cookie %x", c)
	}
	if got, err := cur.Verify(c); err != nil || !bytes.Equal(got, state) {
		t.Fatalf("Verify: %q, %v", got, err)
	}
	// Rotation: cookies of the previous key still verify; the old signer
	// does not know the new key.
	if got, err := cur.Verify(old.Sign(state)); err != nil || !bytes.Equal(got, state) {
		t.Fatalf("old cookie: %q, %v", got, err)
	}
	if _, err := old.Verify(c); !errors.Is(err, ErrBadCookie) {
		t.Fatalf("new cookie under the old key: %v", err)
	}
	for name, bad := range map[string][]byte{
		"empty":       nil,
		"tag only":    c[len(state):],
		"short":       c[:sha256.Size-1],
		"state bit":   flip(c, 3),
		"tag bit":     flip(c, len(c)-1),
		"state added": append([]byte{0}, c...),
	} {
		if _, err := cur.Verify(bad); !errors.Is(err, ErrBadCookie) {
			t.Errorf("%s: %v, want ErrBadCookie", name, err)
		}
	}
	if _, err := NewSigner(make([]byte, MinKeySize-1)); err == nil {
		t.Error("short key accepted")
	}
	if _, err := NewSigner(newKey, []byte("short")); err == nil {
		t.Error("short previous key accepted")
	}
	// An empty state signs to a tag alone, which verifies.
	if got, err := cur.Verify(cur.Sign(nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty state: %q, %v", got, err)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x80
	return c
}

// FuzzVerify: any cookie is checked without panicking, and only a signed
// one verifies.
func FuzzVerify(f *testing.F) {
	s, err := NewSigner([]byte("fuzzing key, long enough......."))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add(s.Sign([]byte("state")))
	f.Fuzz(func(t *testing.T, c []byte) {
		state, err := s.Verify(c)
		if err == nil && !bytes.Equal(s.Sign(state), c) {
			t.Fatalf("%x verified but is not the signature of %x", c, state)
		}
	})
}

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
