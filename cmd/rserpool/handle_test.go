package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/rserpool/rserpool/wire"
)

// Handles that are not text reach ctl's output escaped (wire.PoolHandle),
// in text and in JSON, and the JSON gives the bytes back.
var ctlHandles = []wire.PoolHandle{"\xff\x00", "ctl\x1b[2J", `q"b\`, "\u202e", wire.PoolHandle(bytes.Repeat([]byte{0xfe}, 32))}

func TestCtlOutputEscapesHandles(t *testing.T) {
	for _, h := range ctlHandles {
		pe := wire.PoolElement{ID: 1, HomeServer: 2, User: wire.Transport{Type: wire.TransportTCP, Port: 7,
			Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, Policy: wire.Policy{Type: wire.PolicyRoundRobin}}
		r := &wire.HandleResolutionResponse{PoolHandle: h, Policy: &wire.Policy{Type: wire.PolicyRoundRobin},
			Elements: []wire.PoolElement{pe}}
		check := func(what string, text, js []byte) {
			t.Helper()
			if !strings.Contains(string(text), `pool "`+h.String()+`" `) {
				t.Errorf("%s text output lacks the escaped handle %s:\n%s", what, h, text)
			}
			if bytes.ContainsAny(text, "\x00\x1b\xff") || bytes.ContainsRune(text, '\u202e') {
				t.Errorf("%s text output holds raw bytes: %q", what, text)
			}
			var v struct {
				Handle wire.PoolHandle `json:"handle"`
				Pools  []struct {
					Handle wire.PoolHandle `json:"handle"`
				} `json:"pools"`
			}
			if err := json.Unmarshal(js, &v); err != nil {
				t.Fatalf("%s JSON: %v", what, err)
			}
			if v.Handle != h && (len(v.Pools) != 1 || v.Pools[0].Handle != h) {
				t.Errorf("%s JSON gives back %q, want %q:\n%s", what, v.Handle, h, js)
			}
		}
		var text, js bytes.Buffer
		if err := printResolution(&text, r, false); err != nil {
			t.Fatal(err)
		}
		printResolution(&js, r, true)
		check("ctl resolve", text.Bytes(), js.Bytes())

		d := &hsDump{Registrar: "0x00000002", Pools: []hsPool{{Handle: h, Policy: "round-robin",
			Elements: []resolvedPE{peJSON(pe)}}}, Elements: 1}
		text.Reset()
		js.Reset()
		printHandlespace(&text, d, false)
		printHandlespace(&js, d, true)
		check("ctl handlespace", text.Bytes(), js.Bytes())

		// ctl decode of a registration carrying the handle.
		reg := &wire.Registration{PoolHandle: h, Element: pe}
		b, err := reg.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		if code := runDecode(nil, strings.NewReader(hex.EncodeToString(b)), &out, &errOut); code != 0 {
			t.Fatalf("ctl decode: %d %s", code, errOut.String())
		}
		if !strings.Contains(out.String(), `PoolHandle: "`+h.String()+`"`) {
			t.Errorf("ctl decode output lacks the escaped handle %s:\n%s", h, out.String())
		}
	}
}
