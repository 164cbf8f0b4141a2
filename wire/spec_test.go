package wire

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	ip = netip.MustParseAddr
	rr = Policy{Type: PolicyRoundRobin}
)

// specGoldens are the worked examples of wire-format.md §9.
var specGoldens = []struct {
	name  string
	proto Protocol
	hex   string
	msg   Message
}{
	{"9.1 registration", ASAP,
		"01000038 0009000c 4563686f 506f6f6c 000a0028 12345678 00000000 0000001e 00050010 1b580000 00010008 7f000001 00080008 00000001",
		&Registration{PoolHandle: "EchoPool", Element: PoolElement{
			ID: 0x12345678, RegistrationLife: 30,
			User:   Transport{Type: TransportTCP, Port: 7000, Addrs: []netip.Addr{ip("127.0.0.1")}},
			Policy: rr}}},
	{"9.2 registration response", ASAP,
		"03 00 00 18   00 09 00 0c 45 63 68 6f 50 6f 6f 6c   00 0e 00 08 12 34 56 78",
		&RegistrationResponse{PoolHandle: "EchoPool", ID: 0x12345678}},
	{"9.2 registration response rejected", ASAP,
		"03 01 00 20   00 09 00 0c 45 63 68 6f 50 6f 6f 6c   00 0e 00 08 12 34 56 78  00 0c 00 08 00 05 00 04",
		&RegistrationResponse{Reject: true, PoolHandle: "EchoPool", ID: 0x12345678,
			Error: &OperationError{Causes: []ErrorCause{{Code: CauseInconsistentPolicy}}}}},
	{"9.3 handle resolution", ASAP,
		"05 00 00 10  00 09 00 0c 45 63 68 6f 50 6f 6f 6c",
		&HandleResolution{PoolHandle: "EchoPool"}},
	{"9.3 handle resolution with option", ASAP,
		"05 00 00 18   00 09 00 0c 45 63 68 6f 50 6f 6f 6c   80 3f 00 08 00 00 00 03",
		&HandleResolution{PoolHandle: "EchoPool", HasItems: true, Items: 3}},
	{"9.3 odd handle RFC style", ASAP,
		"05 00 00 0d   00 09 00 09 50 6f 6f 6c 31 00 00 00",
		&HandleResolution{PoolHandle: "Pool1"}},
	{"9.4 handle resolution response", ASAP,
		`06 00 00 40
		00 09 00 0c 45 63 68 6f 50 6f 6f 6c
		00 08 00 08 00 00 00 01
		00 0a 00 28 12 34 56 78 0a 0b 0c 0d 00 00 00 1e
		00 05 00 10 1b 58 00 00 00 01 00 08 7f 00 00 01
		00 08 00 08 00 00 00 01`,
		&HandleResolutionResponse{PoolHandle: "EchoPool", Policy: &rr, Elements: []PoolElement{{
			ID: 0x12345678, HomeServer: 0x0a0b0c0d, RegistrationLife: 30,
			User:   Transport{Type: TransportTCP, Port: 7000, Addrs: []netip.Addr{ip("127.0.0.1")}},
			Policy: rr}}}},
	{"9.4 handle resolution response negative", ASAP,
		"06 00 00 18   00 09 00 0c 45 63 68 6f 50 6f 6f 6c   00 0c 00 08 00 09 00 04",
		&HandleResolutionResponse{PoolHandle: "EchoPool",
			Error: &OperationError{Causes: []ErrorCause{{Code: CauseUnknownPoolHandle}}}}},
	{"9.5 keep-alive", ASAP,
		"07 01 00 1c   0a 0b 0c 0d   00 09 00 0c 45 63 68 6f 50 6f 6f 6c   00 0e 00 08 12 34 56 78",
		&EndpointKeepAlive{Home: true, ServerID: 0x0a0b0c0d, PoolHandle: "EchoPool", HasID: true, ID: 0x12345678}},
	{"9.5 keep-alive RFC", ASAP,
		"07 00 00 14   0a 0b 0c 0d   00 09 00 0c 45 63 68 6f 50 6f 6f 6c",
		&EndpointKeepAlive{ServerID: 0x0a0b0c0d, PoolHandle: "EchoPool"}},
	{"9.5 keep-alive ack", ASAP,
		"08 00 00 18   00 09 00 0c 45 63 68 6f 50 6f 6f 6c   00 0e 00 08 12 34 56 78",
		&EndpointKeepAliveAck{PoolHandle: "EchoPool", ID: 0x12345678}},
	{"9.6 presence", ENRP,
		`01 00 00 2c 0a 0b 0c 0d 00 00 00 00 00 0f 00 06 29 a5 00 00
		00 0b 00 18 0a 0b 0c 0d 00 04 00 10 26 ad 00 00 00 01 00 08 0a 00 00 01`,
		&Presence{Sender: 0x0a0b0c0d, Checksum: 0x29a5, Info: &ServerInfo{ServerID: 0x0a0b0c0d,
			Transport: Transport{Type: TransportSCTP, Port: 9901, Addrs: []netip.Addr{ip("10.0.0.1")}}}}},
	{"9.7 handle update", ENRP,
		`04 00 00 54   0a 0b 0c 0d   00 00 00 00   00 00 00 00
		00 09 00 0c 45 63 68 6f 50 6f 6f 6c
		00 0a 00 38 12 34 56 78 0a 0b 0c 0d 00 00 00 1e
		00 05 00 10 1b 58 00 00 00 01 00 08 0a 00 00 02
		00 08 00 08 00 00 00 01
		00 04 00 10 9c 40 00 00 00 01 00 08 0a 00 00 02`,
		&HandleUpdate{Sender: 0x0a0b0c0d, Action: ActionAddPE, PoolHandle: "EchoPool", Element: PoolElement{
			ID: 0x12345678, HomeServer: 0x0a0b0c0d, RegistrationLife: 30,
			User:   Transport{Type: TransportTCP, Port: 7000, Addrs: []netip.Addr{ip("10.0.0.2")}},
			Policy: rr,
			ASAP:   Transport{Type: TransportSCTP, Port: 40000, Addrs: []netip.Addr{ip("10.0.0.2")}}}}},
	{"9.8 handle table request", ENRP,
		"02 01 00 0c   0a 0b 0c 0d   01 02 03 04",
		&HandleTableRequest{OwnChildrenOnly: true, Sender: 0x0a0b0c0d, Receiver: 0x01020304}},
	{"9.8 server announce", ASAP,
		"0a 00 00 18   0a 0b 0c 0d   00 04 00 10 0f 17 00 00 00 01 00 08 0a 00 00 01",
		&ServerAnnounce{ServerID: 0x0a0b0c0d, Transports: []Transport{
			{Type: TransportSCTP, Port: 3863, Addrs: []netip.Addr{ip("10.0.0.1")}}}}},
}

var cmpOpts = cmp.Options{cmp.Comparer(func(a, b netip.Addr) bool { return a == b })}

func TestSpecGoldens(t *testing.T) {
	for _, tc := range specGoldens {
		t.Run(tc.name, func(t *testing.T) {
			want := parseHex(t, tc.hex)
			got, err := Marshal(tc.msg)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !equalBytes(got, want) {
				t.Errorf("encode\n got %x\nwant %x", got, want)
			}
			m, err := Parse(tc.proto, want)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if d := cmp.Diff(tc.msg, m, cmpOpts); d != "" {
				t.Errorf("Parse (-want +got):\n%s", d)
			}
		})
	}
}

// TestRSPLIBLengthStyle: the RSPLIB form of 9.3 (Message Length counts the
// final padding) decodes to the same message as the RFC form.
func TestRSPLIBLengthStyle(t *testing.T) {
	m, err := ParseASAP(parseHex(t, "05 00 00 10   00 09 00 09 50 6f 6f 6c 31 00 00 00"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&HandleResolution{PoolHandle: "Pool1"}, m); d != "" {
		t.Error(d)
	}
	// Nested: Operation Error and Message Length counting the cause padding.
	m, err = ParseASAP(parseHex(t, "0e 00 00 14 00 0c 00 10 00 01 00 0b 41 23 00 07 de ad be 00"))
	if err != nil {
		t.Fatal(err)
	}
	want := &ASAPError{Error: OperationError{Causes: []ErrorCause{{Code: CauseUnrecognizedParameter, Info: parseHex(t, "41 23 00 07 de ad be")}}}}
	if d := cmp.Diff(want, m); d != "" {
		t.Error(d)
	}
}

func TestParseDoesNotAlias(t *testing.T) {
	b := parseHex(t, specGoldens[6].hex)
	m, err := ParseASAP(b)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := Marshal(m)
	for i := range b {
		b[i] = 0xff
	}
	after, _ := Marshal(m)
	if !equalBytes(before, after) {
		t.Fatal("decoded message changed when the input buffer was overwritten")
	}
}

func TestUnknownParameterActions(t *testing.T) {
	const ph = "00 09 00 0c 45 63 68 6f 50 6f 6f 6c"
	tests := []struct {
		name    string
		hex     string
		err     error
		off     int
		param   string // hex of ParseError.Param
		unrec   []RawParam
		wantMsg Message
	}{
		{"00 stop silently", "05 00 00 18 " + ph + " 01 23 00 08 00 00 00 03", ErrUnknownParameter, 16, "", nil, nil},
		{"01 stop and report", "05 00 00 17 " + ph + " 41 23 00 07 de ad be 00", ErrUnknownParameter, 16, "41 23 00 07 de ad be", nil, nil},
		{"10 skip", "05 00 00 18 " + ph + " 81 23 00 08 00 00 00 03", nil, 0, "", nil,
			&HandleResolution{PoolHandle: "EchoPool"}},
		{"11 skip and report", "05 00 00 17 " + ph + " c1 23 00 07 de ad be 00", nil, 0, "",
			nil,
			&HandleResolution{PoolHandle: "EchoPool", Unrecognized: Unrecognized{[]RawParam{{Type: 0xc123, TLV: parseHex(t, "c1 23 00 07 de ad be")}}}}},
		{"11 inside pool element", "01 00 00 40 " + ph + `000a 0030 12345678 00000000 0000001e
			c000 0005 ff000000 00050010 1b580000 00010008 c0000201 00080008 00000001`, nil, 0, "", nil,
			&Registration{PoolHandle: "EchoPool", Element: PoolElement{ID: 0x12345678, RegistrationLife: 30,
				User: Transport{Type: TransportTCP, Port: 7000, Addrs: []netip.Addr{ip("192.0.2.1")}}, Policy: rr},
				Unrecognized: Unrecognized{[]RawParam{{Type: 0xc000, TLV: parseHex(t, "c0 00 00 05 ff")}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseASAP(parseHex(t, tc.hex))
			if tc.err != nil {
				var pe *ParseError
				if !errors.As(err, &pe) || !errors.Is(err, tc.err) {
					t.Fatalf("got %v, want %v", err, tc.err)
				}
				if pe.Offset != tc.off {
					t.Errorf("offset %d, want %d", pe.Offset, tc.off)
				}
				var wantParam []byte
				if tc.param != "" {
					wantParam = parseHex(t, tc.param)
				}
				if !equalBytes(pe.Param, wantParam) || pe.Report() != (tc.param != "") {
					t.Errorf("Param %x, want %x", pe.Param, wantParam)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.wantMsg, m, cmpOpts); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestUnknownMessage(t *testing.T) {
	for _, tc := range []struct {
		p      Protocol
		typ    uint8
		report bool
	}{{ASAP, 0x0f, false}, {ASAP, 0x3f, false}, {ASAP, 0x41, true}, {ENRP, 0x0b, false}, {ENRP, 0x7f, true}, {ENRP, 0x00, false}, {ASAP, 0xff, false}} {
		_, err := Parse(tc.p, []byte{tc.typ, 0, 0, 4})
		var pe *ParseError
		if !errors.As(err, &pe) || !errors.Is(err, ErrUnknownMessage) || pe.Type != uint16(tc.typ) || pe.Offset != 0 {
			t.Errorf("%v 0x%02x: %v", tc.p, tc.typ, err)
		}
		if ReportUnknownMessage(tc.typ) != tc.report {
			t.Errorf("ReportUnknownMessage(0x%02x) = %v", tc.typ, !tc.report)
		}
	}
}

func TestFailures(t *testing.T) {
	const ph = "00 09 00 0c 45 63 68 6f 50 6f 6f 6c"
	tests := []struct {
		name  string
		proto Protocol
		hex   string
		err   error
		off   int
	}{
		{"empty", ASAP, "", ErrTruncated, 0},
		{"truncated header", ASAP, "05 00 00", ErrTruncated, 0},
		{"length below 4", ASAP, "05 00 00 02", ErrLength, 2},
		{"message length too long", ASAP, "05 00 00 14 " + ph, ErrLength, 2},
		{"message length too short", ASAP, "05 00 00 0f " + ph, ErrLength, 6},
		{"bytes after padded message", ASAP, "05 00 00 10 " + ph + " 00 00 00 00", ErrPadding, 16},
		{"zero-length parameter", ASAP, "05 00 00 14 " + ph + " 80 3f 00 00", ErrLength, 18},
		{"parameter length 3", ASAP, "05 00 00 14 " + ph + " 80 3f 00 03", ErrLength, 18},
		{"parameter header cut", ASAP, "05 00 00 12 " + ph + " 80 3f 00 00", ErrTruncated, 16},
		{"parameter past message", ASAP, "05 00 00 14 " + ph + " 80 3f 00 0c", ErrLength, 18},
		{"nested lengths disagree", ASAP, "01 00 00 38 " + ph +
			"000a 0028 12345678 00000000 0000001e 00050014 1b580000 00010008 7f000001 00080008 00000001", ErrLength, 50},
		{"unknown 0x0 param", ASAP, "02 00 00 18 " + ph + " 00 20 00 08 12 34 56 78", ErrUnknownParameter, 16},
		{"unknown 0x4 param", ASAP, "02 00 00 18 " + ph + " 40 20 00 08 12 34 56 78", ErrUnknownParameter, 16},
		{"PE identifier length 12", ASAP, "02 00 00 1c " + ph + " 00 0e 00 0c 12 34 56 78 00 00 00 00", ErrLength, 18},
		{"PE checksum length 8", ENRP, "01 00 00 14 0a0b0c0d 00000000 000f 0008 29a5 0000", ErrLength, 14},
		{"IPv4 address length 12", ASAP, "0a 00 00 1c 0a0b0c0d 0004 0014 0f17 0000 0001 000c 0a000001 00000000", ErrLength, 18},
		{"TCP with two addresses", ASAP, "0a 00 00 20 0a0b0c0d 0005 0018 0f17 0000 0001 0008 0a000001 0001 0008 0a000002", ErrUnexpectedParameter, 24},
		{"SCTP without address", ASAP, "0a 00 00 10 0a0b0c0d 0004 0008 0f17 0000", ErrMissingParameter, 16},
		{"policy body too short", ASAP, "01 00 00 38 " + ph +
			"000a 0028 12345678 00000000 0000001e 00050010 1b580000 00010008 7f000001 00080008 40000001", ErrLength, 50},
		{"missing pool element", ASAP, "01 00 00 10 " + ph, ErrMissingParameter, 16},
		{"wrong order", ASAP, "02 00 00 18 00 0e 00 08 12 34 56 78 " + ph, ErrUnexpectedParameter, 4},
		{"extra parameter", ASAP, "08 00 00 20 " + ph + " 00 0e 00 08 12 34 56 78 00 0e 00 08 12 34 56 78", ErrUnexpectedParameter, 24},
		{"ENRP below fixed size", ENRP, "07 00 00 0c 0a0b0c0d 00000000", ErrLength, 2},
		{"operation error without causes", ASAP, "0e 00 00 08 00 0c 00 04", ErrMissingParameter, 4},
		{"cause length too long", ASAP, "0e 00 00 0c 00 0c 00 08 00 05 00 08", ErrLength, 10},
		{"HTR pool without PE", ENRP, "03 00 00 18 0a0b0c0d 00000000 " + ph, ErrMissingParameter, 24},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.proto, parseHex(t, tc.hex))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("got (%v, %v), want *ParseError", m, err)
			}
			if !errors.Is(err, tc.err) || pe.Offset != tc.off {
				t.Errorf("got %v at %d, want %v at %d", pe.Err, pe.Offset, tc.err, tc.off)
			}
			if m != nil {
				t.Errorf("message %v returned with error", m)
			}
		})
	}
}

func TestChecksum(t *testing.T) {
	var s ChecksumSum
	if got := s.Checksum(); got != 0xffff {
		t.Errorf("empty: %#04x, want 0xffff", got)
	}
	if got := s.Add(PEChecksumPart("EchoPool", 0x12345678)).Checksum(); got != 0x29a5 {
		t.Errorf("EchoPool: %#04x, want 0x29a5", got)
	}
	if got := s.Add(PEChecksumPart("Pool1", 1)).Checksum(); got != 0x0f23 {
		t.Errorf("Pool1: %#04x, want 0x0f23", got)
	}
	// Incremental add/sub equals from-scratch over the remaining set.
	type pe struct {
		h  string
		id uint32
	}
	var pes []pe
	x := uint32(1)
	rnd := func() uint32 { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x }
	for i := 0; i < 500; i++ {
		h := string([]byte{byte(rnd()), byte(rnd()), byte(rnd()), byte(rnd())}[:1+rnd()%4])
		pes = append(pes, pe{h, rnd()})
	}
	pes = append(pes, pe{"\xff\xff", 0xffffffff}, pe{"\x00", 0})
	var inc ChecksumSum
	for _, p := range pes {
		inc = inc.Add(PEChecksumPart(PoolHandle(p.h), p.id))
	}
	for i := 0; i < len(pes); i += 2 {
		inc = inc.Sub(PEChecksumPart(PoolHandle(pes[i].h), pes[i].id))
	}
	// From scratch: the RFC 1071 sum over all remaining blocks.
	var sum uint64
	for i := 1; i < len(pes); i += 2 {
		blk := append([]byte(pes[i].h), make([]byte, (4-len(pes[i].h)%4)%4)...)
		id := pes[i].id
		blk = append(blk, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
		for j := 0; j < len(blk); j += 2 {
			sum += uint64(blk[j])<<8 | uint64(blk[j+1])
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if got, want := inc.Checksum(), ^uint16(sum); got != want {
		t.Errorf("incremental %#04x, from scratch %#04x", got, want)
	}
	// Removing everything gives the empty checksum again.
	for i := 1; i < len(pes); i += 2 {
		inc = inc.Sub(PEChecksumPart(PoolHandle(pes[i].h), pes[i].id))
	}
	if got := inc.Checksum(); got != 0xffff {
		t.Errorf("after removing all: %#04x", got)
	}
}

func TestPolicyNames(t *testing.T) {
	for _, n := range []string{"round-robin", "weighted-round-robin", "random", "weighted-random", "priority",
		"least-used", "least-used-degradation", "priority-least-used", "randomized-least-used", "least-used-dpf"} {
		pt, err := ParsePolicyName(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if pt.Name() != n {
			t.Errorf("%s -> %v -> %s", n, pt, pt.Name())
		}
	}
	if pt, _ := ParsePolicyName("Least_Used"); pt != PolicyLeastUsed {
		t.Errorf("Least_Used -> %v", pt)
	}
	if _, err := ParsePolicyName("fastest"); !errors.Is(err, ErrUnknownPolicy) {
		t.Errorf("fastest: %v", err)
	}
	if PolicyPriorityLeastUsedDPF.Known() || !PolicyLeastUsedDegradationDPF.Known() {
		t.Error("Known() wrong for RSPLIB policies")
	}
	if s := CauseRSPLIBUnsupportedPolicy.String(); s != "RSPLIB: unsupported pool policy" {
		t.Error(s)
	}
	if s := ENRP.MessageName(TypeHandleUpdate); s != "ENRP_HANDLE_UPDATE" {
		t.Error(s)
	}
	if s := ASAP.MessageName(0x33); s != "ASAP_UNKNOWN_0x33" {
		t.Error(s)
	}
}

func TestValidate(t *testing.T) {
	good := PoolElement{ID: 1, User: Transport{Type: TransportTCP, Port: 80, Addrs: []netip.Addr{ip("192.0.2.1")}}, Policy: rr}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		mod   func(*PoolElement)
		cause CauseCode
	}{
		{"zero ID", func(p *PoolElement) { p.ID = 0 }, CauseInvalidValues},
		{"port 0", func(p *PoolElement) { p.User.Port = 0 }, CauseInvalidValues},
		{"unknown policy", func(p *PoolElement) { p.Policy.Type = 0x12345678 }, CauseRSPLIBUnsupportedPolicy},
		{"two TCP addresses", func(p *PoolElement) { p.User.Addrs = []netip.Addr{ip("192.0.2.1"), ip("192.0.2.2")} }, CauseInvalidValues},
	}
	for _, tc := range tests {
		p := good
		tc.mod(&p)
		var ve *ValidationError
		if err := p.Validate(); !errors.As(err, &ve) || ve.Cause != tc.cause || !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%s: %v, want cause %v", tc.name, err, tc.cause)
		}
	}
	if ValidatePoolHandle("") == nil || ValidatePoolHandle(PoolHandle(string(make([]byte, 33)))) == nil || ValidatePoolHandle("EchoPool") != nil {
		t.Error("ValidatePoolHandle")
	}
}

func TestTextMarshal(t *testing.T) {
	for _, p := range []PolicyType{PolicyLeastUsed, PolicyLeastUsedDPF, 0x12345678} {
		b, _ := p.MarshalText()
		var q PolicyType
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("%v -> %s -> %v, %v", p, b, q, err)
		}
	}
	for _, p := range []TransportType{0, TransportSCTP, TransportUDPLite, 0x99} {
		b, _ := p.MarshalText()
		var q TransportType
		if err := q.UnmarshalText(b); err != nil || q != p {
			t.Errorf("%v -> %s -> %v, %v", p, b, q, err)
		}
	}
}

func TestPolicyFields(t *testing.T) {
	if d := cmp.Diff([]string{"Load", "LoadDegradation", "LoadDPF", "Distance"}, PolicyLeastUsedDegradationDPF.Fields()); d != "" {
		t.Error(d)
	}
	if f := PolicyRoundRobin.Fields(); f != nil {
		t.Error(f)
	}
}
