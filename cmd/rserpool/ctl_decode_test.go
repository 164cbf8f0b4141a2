package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCtlDecode(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// wire-format.md §9.1 with comments and 0x prefixes.
	reg := write("reg.hex", `# ASAP_REGISTRATION
0x01 00 00 38   # header
00 09 00 0c 45 63 68 6f 50 6f 6f 6c
000a0028 12345678 00000000 0000001e 00050010 1b580000 00010008 7f000001 00080008 00000001
`)
	presence := []byte{0x01, 0x00, 0x00, 0x2c, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 0, 0x00, 0x0f, 0x00, 0x06, 0x29, 0xa5, 0, 0,
		0x00, 0x0b, 0x00, 0x18, 0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0x04, 0x00, 0x10, 0x26, 0xad, 0, 0, 0x00, 0x01, 0x00, 0x08, 10, 0, 0, 1}
	bin := write("presence.bin", string(presence))
	bad := write("bad.hex", "05 00 00 14 00 09 00 0c 45 63 68 6f 50 6f 6f 6c")

	tests := []struct {
		name  string
		args  []string
		stdin string
		code  int
		out   []string // substrings of stdout
		err   string   // substring of stderr
	}{
		{"hex tree", []string{reg}, "", 0, []string{
			"ASAP_REGISTRATION (type 0x01, flags 0x00, length 56)",
			`PoolHandle: "EchoPool"`, "ID: 305419896 (0x12345678)", "Type: TCP (0x5)", "Port: 7000",
			"Addrs: 127.0.0.1", "Type: Round Robin (0x1)"}, ""},
		{"binary ENRP", []string{"-proto", "enrp", bin}, "", 0, []string{
			"ENRP_PRESENCE", "Checksum: 10661 (0x29a5)", "ServerID: 168496141 (0x0a0b0c0d)", "Addrs: 10.0.0.1"}, ""},
		{"stdin", []string{"-"}, "08 00 00 18 00 09 00 0c 45 63 68 6f 50 6f 6f 6c 00 0e 00 08 12 34 56 78", 0,
			[]string{"ASAP_ENDPOINT_KEEP_ALIVE_ACK"}, ""},
		{"same bytes as ENRP", []string{"-proto", "enrp", "-"}, "08 00 00 10 0a0b0c0d 00000000 30000003", 0,
			[]string{"ENRP_INIT_TAKEOVER_ACK", "Target: 805306371 (0x30000003)"}, ""},
		{"bad length", []string{bad}, "", 1, nil, "invalid at offset 2: bad length field"},
		{"odd hex", []string{"-"}, "05 00 0", 1, nil, "odd number of hex digits"},
		{"bad proto", []string{"-proto", "sctp", reg}, "", 2, nil, "-proto must be asap or enrp"},
		{"missing file", []string{filepath.Join(dir, "nope")}, "", 1, nil, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runDecode(tc.args, strings.NewReader(tc.stdin), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			for _, s := range tc.out {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), tc.err) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.err)
			}
		})
	}
}

func TestCtlDecodeJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	in := "06 00 00 18   00 09 00 0c 45 63 68 6f 50 6f 6f 6c   00 0c 00 08 00 09 00 04"
	if code := runDecode([]string{"-json"}, strings.NewReader(in), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var out struct {
		Name    string
		Length  int
		Message struct {
			PoolHandle string
			Error      struct{ Causes []struct{ Code int } }
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	if out.Name != "ASAP_HANDLE_RESOLUTION_RESPONSE" || out.Length != 24 || out.Message.PoolHandle != "EchoPool" ||
		len(out.Message.Error.Causes) != 1 || out.Message.Error.Causes[0].Code != 9 {
		t.Errorf("unexpected JSON: %s", stdout.String())
	}
}
