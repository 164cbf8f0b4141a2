package wire

import (
	"net/netip"
	"testing"
)

// hrResponse3 is a Handle Resolution Response with three PEs, as an RSPLIB
// registrar sends it to a pool user.
func hrResponse3() *HandleResolutionResponse {
	lu := Policy{Type: PolicyLeastUsed, Load: 0x10000000}
	m := &HandleResolutionResponse{PoolHandle: "PingPongPool", Policy: &lu}
	for i := 0; i < 3; i++ {
		m.Elements = append(m.Elements, PoolElement{
			ID: 0x5e150015 + uint32(i), HomeServer: 0x20000002, RegistrationLife: 90000,
			User:   Transport{Type: TransportSCTP, Port: 33930, Use: UseDataAndControl, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(11 + i)})}},
			Policy: lu,
		})
	}
	return m
}

func BenchmarkParseHandleResolutionResponse3(b *testing.B) {
	buf, err := Marshal(hrResponse3())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseASAP(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendHandleResolutionResponse3(b *testing.B) {
	m := hrResponse3()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = m.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func benchParseVector(b *testing.B, p Protocol, file string) {
	var data []byte
	for _, v := range loadVectors(b) {
		if v.file == file {
			data = v.data
		}
	}
	if data == nil {
		b.Skipf("%s not found", file)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(p, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseRegistration(b *testing.B) { benchParseVector(b, ASAP, "asap-registration-04.hex") }
func BenchmarkParseHandleTableResponse1384(b *testing.B) {
	benchParseVector(b, ENRP, "enrp-handle-table-response-04.hex")
}
func BenchmarkParsePresence(b *testing.B) { benchParseVector(b, ENRP, "enrp-presence-03.hex") }

func BenchmarkAppendHandleUpdate(b *testing.B) {
	m, err := ParseENRP(parseHex(b, specGoldens[12].hex))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		if buf, err = m.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAppendDoesNotAllocate: encoding into a buffer with enough capacity
// allocates nothing.
func TestAppendDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count")
	}
	msgs := []Message{hrResponse3()}
	for _, g := range specGoldens {
		msgs = append(msgs, g.msg)
	}
	buf := make([]byte, 0, 1024)
	for _, m := range msgs {
		if n := testing.AllocsPerRun(100, func() { buf, _ = m.AppendBinary(buf[:0]) }); n != 0 {
			t.Errorf("%s: %.0f allocations", MessageName(m), n)
		}
	}
}

// TestParseAllocations pins the allocation budget of the hot decode path.
func TestParseAllocations(t *testing.T) {
	buf, err := Marshal(hrResponse3())
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseASAP(buf) }); n > 4 {
		t.Errorf("Handle Resolution Response with 3 PEs: %.0f allocations, want ≤ 4", n)
	}
}
