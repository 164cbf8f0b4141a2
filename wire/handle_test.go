package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPoolHandleEscape(t *testing.T) {
	for _, tc := range []struct {
		h    PoolHandle
		want string
	}{
		{"EchoPool", "EchoPool"},
		{"", ""},
		{"with space", "with space"},
		{"Pool-Ü-日本", "Pool-Ü-日本"},
		{"a\\b", `a\\b`},
		{`say "hi"`, `say \x22hi\x22`},
		{"\x00", `\x00`},
		{"nul\x00in", `nul\x00in`},
		{"\xff\xfe", `\xff\xfe`},
		{"tab\there\n", `tab\x09here\x0a`},
		{"del\x7f", `del\x7f`},
		{"nbsp\u00a0", `nbsp\xc2\xa0`},
		{"rlo\u202eevil", `rlo\xe2\x80\xaeevil`},
		{"half\xe6\x97", `half\xe6\x97`},
		{`\x41`, `\\x41`},
	} {
		if got := tc.h.String(); got != tc.want {
			t.Errorf("%x: String() = %s, want %s", string(tc.h), got, tc.want)
		}
		back, err := ParsePoolHandle(tc.want)
		if err != nil || back != tc.h {
			t.Errorf("ParsePoolHandle(%s) = %x, %v; want %x", tc.want, string(back), err, string(tc.h))
		}
	}
}

func TestPoolHandleEveryByte(t *testing.T) {
	// Every single byte, every pair of bytes, and a maximum-length handle of
	// every byte value round-trip, and the text is valid UTF-8 without a
	// double quote.
	check := func(h PoolHandle) {
		t.Helper()
		s := h.String()
		if !utf8.ValidString(s) || strings.ContainsRune(s, '"') {
			t.Fatalf("%x: escaped form %q is not clean text", string(h), s)
		}
		back, err := ParsePoolHandle(s)
		if err != nil || back != h {
			t.Fatalf("%x: round trip gave %x, %v", string(h), string(back), err)
		}
	}
	for a := range 256 {
		check(PoolHandle([]byte{byte(a)}))
		for b := range 256 {
			check(PoolHandle([]byte{byte(a), byte(b)}))
		}
	}
	for a := range 256 {
		check(PoolHandle(strings.Repeat(string([]byte{byte(a)}), MaxPoolHandleLen)))
	}
}

func TestParsePoolHandleErrors(t *testing.T) {
	for _, s := range []string{`\`, `a\`, `\x`, `\x4`, `\xZZ`, `\n`, `\u0041`, `ok\q`} {
		_, err := ParsePoolHandle(s)
		var he *HandleEscapeError
		if !errors.Is(err, ErrHandleEscape) || !errors.As(err, &he) {
			t.Errorf("ParsePoolHandle(%q) = %v, want ErrHandleEscape", s, err)
		}
	}
	if h, err := ParsePoolHandle(`\x41\x4A`); err != nil || h != "AJ" {
		t.Errorf(`upper-case hex: %q, %v`, string(h), err)
	}
}

func TestPoolHandleFormat(t *testing.T) {
	h := PoolHandle("P\x00\"")
	for _, tc := range []struct{ format, want string }{
		{"%s", `P\x00\x22`},
		{"%v", `P\x00\x22`},
		{"%q", `"P\x00\x22"`},
		{"%x", `500022`},
		{"%X", `500022`},
		{"%d", `%!d(wire.PoolHandle=P\x00\x22)`},
	} {
		if got := fmt.Sprintf(tc.format, h); got != tc.want {
			t.Errorf("Sprintf(%s) = %s, want %s", tc.format, got, tc.want)
		}
	}
}

func TestPoolHandleJSON(t *testing.T) {
	type doc struct {
		Handle PoolHandle `json:"handle"`
	}
	in := doc{Handle: "\xffx\\"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"handle":"\\xffx\\\\"}` {
		t.Fatalf("JSON = %s", b)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("Unmarshal = %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"handle":"\\q"}`), &out); !errors.Is(err, ErrHandleEscape) {
		t.Fatalf("bad escape: %v", err)
	}
}

func FuzzPoolHandleEscape(f *testing.F) {
	for _, s := range []string{"EchoPool", "\x00", "\xff", `\`, `"`, "\u202e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := PoolHandle(s)
		e := h.String()
		if !utf8.ValidString(e) || strings.ContainsRune(e, '"') {
			t.Fatalf("escaped form %q", e)
		}
		back, err := ParsePoolHandle(e)
		if err != nil || back != h {
			t.Fatalf("round trip %x -> %q -> %x, %v", s, e, string(back), err)
		}
		// Parsing arbitrary text never panics; when it succeeds, escaping
		// the result and parsing again is stable.
		if p, err := ParsePoolHandle(s); err == nil {
			if q, err := ParsePoolHandle(p.String()); err != nil || q != p {
				t.Fatalf("reparse of %q: %x, %v", s, string(q), err)
			}
		}
	})
}
