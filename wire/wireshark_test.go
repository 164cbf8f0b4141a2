package wire

import (
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// wiresharkMessages returns at least one realistic instance of every ASAP
// and ENRP message type, using every transport kind Wireshark 4.0 decodes
// (SCTP, TCP, UDP, DCCP, UDP-Lite) and several policies. Opaque Transport is
// left out: Wireshark 4.0 does not know it.
func wiresharkMessages() (asap, enrp []Message, udp map[Message]bool) {
	a := func(s ...string) []netip.Addr {
		var r []netip.Addr
		for _, x := range s {
			r = append(r, netip.MustParseAddr(x))
		}
		return r
	}
	sctp := Transport{Type: TransportSCTP, Port: 34891, Use: UseDataAndControl, Addrs: a("192.0.2.11", "2001:db8::11")}
	tcp := Transport{Type: TransportTCP, Port: 7000, Addrs: a("192.0.2.12")}
	udpT := Transport{Type: TransportUDP, Port: 7001, Addrs: a("2001:db8::13")}
	dccp := Transport{Type: TransportDCCP, Port: 7002, ServiceCode: 42, Addrs: a("192.0.2.14")}
	udplite := Transport{Type: TransportUDPLite, Port: 7003, Addrs: a("192.0.2.15")}
	asapT := Transport{Type: TransportSCTP, Port: 40000, Addrs: a("192.0.2.11")}
	pe := func(id uint32, t Transport, p Policy, withASAP bool) PoolElement {
		e := PoolElement{ID: id, HomeServer: 0x10000001, RegistrationLife: 90000, User: t, Policy: p}
		if withASAP {
			e.ASAP = asapT
		}
		return e
	}
	rr := Policy{Type: PolicyRoundRobin}
	wrr := Policy{Type: PolicyWeightedRoundRobin, Weight: 3}
	lu := Policy{Type: PolicyLeastUsed, Load: 0x40000000}
	lud := Policy{Type: PolicyLeastUsedDegradation, Load: 1, LoadDegradation: 2}
	prio := Policy{Type: PolicyPriority, Priority: 7}
	ludpf := Policy{Type: PolicyLeastUsedDPF, Load: 5, LoadDPF: 0x1999999a, Distance: 20}
	oe := &OperationError{Causes: []ErrorCause{{Code: CauseInconsistentPolicy, Info: mustEncodePolicy(rr)}}}
	sa := &ServerAnnounce{ServerID: 0x10000001, Transports: []Transport{{Type: TransportSCTP, Port: 3863, Addrs: a("192.0.2.1")}}}
	asap = []Message{
		&Registration{PoolHandle: "EchoPool", Element: pe(0x2e110011, sctp, rr, false)},
		&Registration{PoolHandle: "TcpPool", Element: pe(0x2e110012, tcp, wrr, false)},
		&Registration{PoolHandle: "UdpPool", Element: pe(0x2e110013, udpT, lud, false)},
		&Registration{PoolHandle: "DccpPool", Element: pe(0x2e110014, dccp, prio, false)},
		&Registration{PoolHandle: "LitePool", Element: pe(0x2e110015, udplite, ludpf, false)},
		&Deregistration{PoolHandle: "EchoPool", ID: 0x2e110011},
		&RegistrationResponse{Reject: true, PoolHandle: "EchoPool", ID: 0x2e110011, Error: oe},
		&DeregistrationResponse{PoolHandle: "EchoPool", ID: 0x2e110011},
		&HandleResolution{PoolHandle: "EchoPool", HasItems: true, Items: 3},
		&HandleResolutionResponse{PoolHandle: "PingPongPool", Policy: &lu, Elements: []PoolElement{
			pe(1, sctp, lu, false), pe(2, tcp, lu, false)}},
		&HandleResolutionResponse{PoolHandle: "NoSuchPool", Error: &OperationError{Causes: []ErrorCause{{Code: CauseUnknownPoolHandle}}}},
		&EndpointKeepAlive{Home: true, ServerID: 0x10000001, PoolHandle: "EchoPool", HasID: true, ID: 0x2e110011},
		&EndpointKeepAliveAck{PoolHandle: "EchoPool", ID: 0x2e110011},
		&EndpointUnreachable{PoolHandle: "DeadPool", ID: 0xde180018},
		sa,
		&Cookie{Cookie: []byte("<PP-TD1>\x00\x00\x00\x00\x00\x00\x00\x04")},
		&CookieEcho{Cookie: []byte("<PP-TD1>\x00\x00\x00\x00\x00\x00\x00\x04")},
		&BusinessCard{PoolHandle: "EchoPool", Elements: []PoolElement{pe(1, sctp, rr, false), pe(2, tcp, rr, false)}},
		&ASAPError{Error: OperationError{Causes: []ErrorCause{{Code: CauseInvalidValues, Info: []byte{0x00, 0x09, 0x00, 0x05, 0x58}}}}},
	}
	si := ServerInfo{ServerID: 0x10000001, Transport: Transport{Type: TransportSCTP, Port: 9901, Addrs: a("192.0.2.1", "2001:db8::1")}}
	pr := &Presence{Sender: 0x10000001, Checksum: PEChecksumPart("EchoPool", 0x2e110011).Checksum(), Info: &si}
	enrp = []Message{
		pr,
		&Presence{ReplyRequired: true, Sender: 0x10000001, Receiver: 0x20000002, Checksum: 0xffff, Info: &si},
		&HandleTableRequest{OwnChildrenOnly: true, Sender: 0x26000006, Receiver: 0x30000003},
		&HandleTableResponse{More: true, Sender: 0x20000002, Receiver: 0x26000006, Pools: []PoolEntry{
			{PoolHandle: "EchoPool", Elements: []PoolElement{pe(1, sctp, rr, true), pe(2, tcp, rr, true)}},
			{PoolHandle: "WeightedPool", Elements: []PoolElement{pe(3, udpT, wrr, true)}}}},
		&HandleTableResponse{Reject: true, Sender: 0x10000001, Receiver: 0x99999999},
		&HandleUpdate{TakeoverSuggested: true, Sender: 0x20000002, Receiver: 0x30000003, Action: ActionAddPE, PoolHandle: "EchoPool", Element: pe(4, dccp, lu, true)},
		&HandleUpdate{Sender: 0x20000002, Action: ActionDelPE, PoolHandle: "EchoPool", Element: pe(5, udplite, rr, true)},
		&ListRequest{Sender: 0x10000001, Receiver: 0x20000002},
		&ListResponse{Sender: 0x20000002, Receiver: 0x10000001, Servers: []ServerInfo{si, {ServerID: 0x30000003, Transport: Transport{Type: TransportSCTP, Port: 9901, Addrs: a("192.0.2.3")}}}},
		&InitTakeover{Sender: 0x10000001, Target: 0x30000003},
		&InitTakeoverAck{Sender: 0x20000002, Receiver: 0x10000001, Target: 0x30000003},
		&TakeoverServer{Sender: 0x10000001, Target: 0x30000003},
		&ENRPError{Sender: 0x26000006, Receiver: 0x10000001, Error: OperationError{Causes: []ErrorCause{{Code: CauseRSPLIBInvalidValue}}}},
	}
	return asap, enrp, map[Message]bool{sa: true, pr: true}
}

func mustEncodePolicy(p Policy) []byte {
	e := enc{}
	e.policy(&p)
	return e.b
}

// TestWireshark checks the encoder's output with Wireshark's own ASAP and
// ENRP dissectors (wirecheck-hex --strict).
func TestWireshark(t *testing.T) {
	if testing.Short() {
		t.Skip("runs tshark")
	}
	for _, tool := range []string{"tshark", "text2pcap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install tshark): %v", tool, err)
		}
	}
	checker, err := filepath.Abs("../../shared/wirecheck/wirecheck-hex")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(checker); err != nil {
		t.Skipf("wirecheck not available: %v", err)
	}
	asap, enrp, udp := wiresharkMessages()
	dir := t.TempDir()
	seen := map[string]bool{}
	var sctpFiles, udpFiles []string
	write := func(prefix string, i int, m Message) {
		b, err := Marshal(m)
		if err != nil {
			t.Fatalf("%s: %v", MessageName(m), err)
		}
		seen[MessageName(m)] = true
		name := filepath.Join(dir, prefix+"-"+strconv.Itoa(i)+"-"+strings.ToLower(MessageName(m))+".hex")
		if err := os.WriteFile(name, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		sctpFiles = append(sctpFiles, name)
		if udp[m] {
			udpFiles = append(udpFiles, name)
		}
	}
	for i, m := range asap {
		write("asap", i, m)
	}
	for i, m := range enrp {
		write("enrp", i, m)
	}
	for t8 := uint8(1); t8 <= 14; t8++ {
		if !seen[ASAP.MessageName(t8)] {
			t.Errorf("no %s in the Wireshark check", ASAP.MessageName(t8))
		}
	}
	for t8 := uint8(1); t8 <= 10; t8++ {
		if !seen[ENRP.MessageName(t8)] {
			t.Errorf("no %s in the Wireshark check", ENRP.MessageName(t8))
		}
	}
	run := func(args ...string) {
		out, err := exec.Command(checker, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "RESULT: PASS") {
			t.Errorf("wirecheck-hex %s: %v\n%s", strings.Join(args[:2], " "), err, out)
		}
	}
	run(append([]string{"--strict", "-t", "sctp"}, sctpFiles...)...)
	run(append([]string{"--strict", "-t", "udp"}, udpFiles...)...)
}
