package pingpong

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rserpool/rserpool/session"
	"github.com/rserpool/rserpool/session/sessiontest"
	"github.com/rserpool/rserpool/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A Ping and its Pong as RSPLIB 3.4.4 sent them
// (../../../shared/testdata/rsplib-3.4/scenario-failures.pcap frames 2229
// and 2231, SCTP PPID 33).
const (
	rsplibData = "Nachricht: 1, Zeitstempel: 1795466094225189"
	rsplibPing = "01 00 00 37 00 00 00 00 00 00 00 01 " + rsplibHex
	rsplibPong = "02 00 00 3f 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 01 " + rsplibHex
	rsplibHex  = "4e 61 63 68 72 69 63 68 74 3a 20 31 2c 20 5a 65 69 74 73 74 65 6d 70 65 6c 3a 20 31 37 39 35 34 36 36 30 39 34 32 32 35 31 38 39"
)

func TestFormatsMatchRSPLIB(t *testing.T) {
	ping, err := AppendPing(nil, Ping{MessageNo: 1, Data: []byte(rsplibData)})
	if err != nil || !bytes.Equal(ping, unhex(t, rsplibPing)) {
		t.Fatalf("Ping %x, %v\nwant %x", ping, err, unhex(t, rsplibPing))
	}
	pong, err := AppendPong(nil, Pong{MessageNo: 1, ReplyNo: 1, Data: []byte(rsplibData)})
	if err != nil || !bytes.Equal(pong, unhex(t, rsplibPong)) {
		t.Fatalf("Pong %x, %v\nwant %x", pong, err, unhex(t, rsplibPong))
	}
	p, err := ParsePong(unhex(t, rsplibPong))
	if err != nil || p.MessageNo != 1 || p.ReplyNo != 1 || string(p.Data) != rsplibData {
		t.Fatalf("ParsePong: %+v, %v", p, err)
	}
	q, err := ParsePing(unhex(t, rsplibPing))
	if err != nil || q.MessageNo != 1 || string(q.Data) != rsplibData {
		t.Fatalf("ParsePing: %+v, %v", q, err)
	}
}

// The cookies and cookie echoes RSPLIB's PingPong PEs and pool users sent
// decode to their reply numbers and encode back to the same bytes.
func TestRSPLIBCookieVectors(t *testing.T) {
	dir := "../../../shared/testdata/rsplib-3.4/vectors"
	want := map[string]uint64{
		"asap-cookie-01.hex": 2, "asap-cookie-06.hex": 7,
		"asap-cookie-echo-01.hex": 0x16, "asap-cookie-echo-06.hex": 0x2a,
	}
	for name, n := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			t.Skipf("RSPLIB vectors not available at %s", dir)
		}
		if err != nil {
			t.Fatal(err)
		}
		m, err := wire.ParseASAP(unhex(t, string(b)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var cookie []byte
		switch m := m.(type) {
		case *wire.Cookie:
			cookie = m.Cookie
		case *wire.CookieEcho:
			cookie = m.Cookie
		default:
			t.Fatalf("%s: %T", name, m)
		}
		got, err := ParseCookie(cookie)
		if err != nil || got != n || !bytes.Equal(Cookie(got), cookie) {
			t.Fatalf("%s: reply %d, %v; want %d", name, got, err, n)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":         nil,
		"header only":   {1, 0, 0, 4},
		"wrong type":    unhex(t, rsplibPong),
		"length short":  {1, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 1},
		"length beyond": {1, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 1},
	} {
		if _, err := ParsePing(b); !errors.Is(err, ErrFormat) {
			t.Errorf("Ping %s: %v", name, err)
		}
	}
	if _, err := ParsePong(unhex(t, rsplibPing)); !errors.Is(err, ErrFormat) {
		t.Errorf("Pong from a Ping: %v", err)
	}
	for _, c := range [][]byte{nil, []byte("<PP-TD1>1234567"), []byte("<PP-TD2>12345678"), append(Cookie(1), 0)} {
		if _, err := ParseCookie(c); !errors.Is(err, ErrFormat) {
			t.Errorf("cookie %q: %v", c, err)
		}
	}
	if _, err := AppendPing(nil, Ping{Data: make([]byte, MaxData+1)}); err == nil {
		t.Error("oversized Ping encoded")
	}
}

// FuzzParse: no input panics, and what decodes encodes back to the bytes
// its Length covers.
func FuzzParse(f *testing.F) {
	f.Add(unhex(f, rsplibPing))
	f.Add(unhex(f, rsplibPong))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParsePing(b); err == nil {
			if e, _ := AppendPing(nil, p); !bytes.Equal(e, b[:len(e)]) {
				t.Fatalf("Ping %x re-encodes to %x", b, e)
			}
		}
		if p, err := ParsePong(b); err == nil {
			if e, _ := AppendPong(nil, p); !bytes.Equal(e, b[:len(e)]) {
				t.Fatalf("Pong %x re-encodes to %x", b, e)
			}
		}
		if n, err := ParseCookie(b); err == nil && !bytes.Equal(Cookie(n), b) {
			t.Fatalf("cookie %x", b)
		}
	})
}

// Our client and our PEs: a PE that ends the session after 10 Pongs
// (RSPLIB's failure tester) makes the client fail over to the other one,
// which goes on from the cookie: no gap in the reply numbers.
func TestClientFailsOverWithoutGap(t *testing.T) {
	reg := sessiontest.Registrar(t)
	sessiontest.StartPE(t, reg, "PingPongPool", 1, Handler(HandlerConfig{FailAfter: 10}), setPPID)
	sessiontest.StartPE(t, reg, "PingPongPool", 2, Handler(HandlerConfig{FailAfter: 10}), setPPID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := session.Dial(ctx, "PingPongPool", session.Config{Cache: sessiontest.Cache(t, reg), PPID: PPID})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out bytes.Buffer
	r, err := Run(ctx, s, ClientConfig{Interval: 5 * time.Millisecond, Count: 25, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	// 25 Pongs; the PEs end sessions after Pongs 10 and 20.
	if r.Pings != 25 || r.Pongs != 25 || r.Failovers != 2 || r.Gaps != 0 || r.LastReply != 25 {
		t.Fatalf("%+v\n%s", r, out.String())
	}
	fails := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Failover from PE $0000000") && strings.Contains(sc.Text(), "cookie echoed: true") {
			fails++
		}
	}
	if fails != 2 {
		t.Fatalf("%d failover lines with a cookie echoed, want 2:\n%s", fails, out.String())
	}
}

func setPPID(c *session.ServerConfig) { c.PPID = PPID }
