package handlespace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rserpool/rserpool/wire"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x5eed)) }

func tcpPE(id, home uint32, typ wire.PolicyType) wire.PoolElement {
	return wire.PoolElement{
		ID:               id,
		HomeServer:       home,
		RegistrationLife: 30000,
		User: wire.Transport{Type: wire.TransportTCP, Port: 7000,
			Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(id >> 8), byte(id)})}},
		Policy: wire.Policy{Type: typ, Weight: 1},
	}
}

// refChecksum is RFC 5353 §3.6.2 / wire-format.md §7 computed from scratch:
// the Internet checksum over padded(handle) ++ be32(id) of every PE.
func refChecksum(pes []key) uint16 {
	var sum uint64
	for _, k := range pes {
		b := []byte(k.handle)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		b = binary.BigEndian.AppendUint32(b, k.id)
		for i := 0; i < len(b); i += 2 {
			sum += uint64(b[i])<<8 | uint64(b[i+1])
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

type key struct {
	handle wire.PoolHandle
	id     uint32
}

func TestChecksumVectors(t *testing.T) {
	h := New(Options{})
	if got := h.Checksum(1); got != 0xffff {
		t.Fatalf("empty checksum = %#04x", got)
	}
	mustRegister(t, h, "EchoPool", tcpPE(0x12345678, 0x0a0b0c0d, wire.PolicyRoundRobin))
	if got := h.Checksum(0x0a0b0c0d); got != 0x29a5 {
		t.Fatalf("EchoPool checksum = %#04x, want 0x29a5", got)
	}
	mustRegister(t, h, "Pool1", tcpPE(1, 7, wire.PolicyRoundRobin))
	if got := h.Checksum(7); got != 0x0f23 {
		t.Fatalf("Pool1 checksum = %#04x, want 0x0f23", got)
	}
	if got := refChecksum([]key{{"EchoPool", 0x12345678}}); got != 0x29a5 {
		t.Fatalf("reference implementation = %#04x", got)
	}
}

func mustRegister(t testing.TB, h *Handlespace, handle wire.PoolHandle, pe wire.PoolElement) *Element {
	t.Helper()
	e, _, err := h.Register(handle, pe, t0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestInvariants runs thousands of random operations and after each compares
// the checksums, owner indexes, counts and expiry index with a model.
func TestInvariants(t *testing.T) {
	rng := seeded(1)
	h := New(Options{Rand: seeded(2)})
	handles := []wire.PoolHandle{"a", "EchoPool", "Pool1", "odd-length", "\x00\xff\x01", "x234567890123456789012345678901y"}
	owners := []uint32{0, 1, 0xdeadbeef, 0x0a0b0c0d}
	type mpe struct {
		home   uint32
		expiry time.Time
	}
	model := map[key]*mpe{}
	now := t0
	var buf []*Element
	for op := range 5000 {
		k := key{handles[rng.IntN(len(handles))], 1 + rng.Uint32N(40)}
		home := owners[rng.IntN(len(owners))]
		switch r := rng.IntN(10); {
		case r < 4: // register or re-register with a possibly other home
			_, created, err := h.Register(k.handle, tcpPE(k.id, home, wire.PolicyLeastUsed), now)
			if err != nil {
				t.Fatal(err)
			}
			if m := model[k]; m != nil {
				if created {
					t.Fatalf("op %d: re-registration reported as created", op)
				}
				m.home = home
			} else {
				if !created {
					t.Fatalf("op %d: registration not reported as created", op)
				}
				model[k] = &mpe{home: home}
			}
		case r < 6:
			_, ok := h.Deregister(k.handle, k.id)
			if ok != (model[k] != nil) {
				t.Fatalf("op %d: Deregister ok = %v", op, ok)
			}
			delete(model, k)
		case r < 7:
			if h.SetHome(k.handle, k.id, home) != (model[k] != nil) {
				t.Fatalf("op %d: SetHome result", op)
			}
			if m := model[k]; m != nil {
				m.home = home
			}
		case r < 9:
			exp := time.Time{}
			if rng.IntN(4) > 0 {
				exp = now.Add(time.Duration(rng.IntN(100)) * time.Second)
			}
			if h.SetExpiry(k.handle, k.id, exp) != (model[k] != nil) {
				t.Fatalf("op %d: SetExpiry result", op)
			}
			if m := model[k]; m != nil {
				m.expiry = exp
			}
		default: // time passes; expire
			now = now.Add(time.Duration(rng.IntN(20)) * time.Second)
			buf = h.Expired(now, buf[:0])
			var want []key
			for k, m := range model {
				if !m.expiry.IsZero() && !m.expiry.After(now) {
					want = append(want, k)
				}
			}
			if len(buf) != len(want) {
				t.Fatalf("op %d: Expired returned %d, want %d", op, len(buf), len(want))
			}
			for i, e := range buf {
				if i > 0 && expiresBefore(e, buf[i-1]) {
					t.Fatalf("op %d: Expired out of order", op)
				}
				if e.Expiry.After(now) || model[key{e.Pool, e.ID}] == nil {
					t.Fatalf("op %d: Expired returned %s/%d", op, e.Pool, e.ID)
				}
			}
			for _, e := range slices.Clone(buf) {
				h.Deregister(e.Pool, e.ID)
				delete(model, key{e.Pool, e.ID})
			}
		}
		checkModel(t, op, h, func() map[key]uint32 {
			m := map[key]uint32{}
			for k, v := range model {
				m[k] = v.home
			}
			return m
		}())
	}
}

func checkModel(t *testing.T, op int, h *Handlespace, model map[key]uint32) {
	t.Helper()
	byOwner := map[uint32][]key{}
	pools := map[wire.PoolHandle]int{}
	for k, home := range model {
		byOwner[home] = append(byOwner[home], k)
		pools[k.handle]++
	}
	if h.NumElements() != len(model) || h.NumPools() != len(pools) {
		t.Fatalf("op %d: %d elements in %d pools, want %d in %d", op, h.NumElements(), h.NumPools(), len(model), len(pools))
	}
	if got, want := h.Owners(), slices.Sorted(maps.Keys(byOwner)); !slices.Equal(got, want) {
		t.Fatalf("op %d: Owners = %v, want %v", op, got, want)
	}
	for _, o := range []uint32{0, 1, 0xdeadbeef, 0x0a0b0c0d, 42} {
		if got, want := h.Checksum(o), refChecksum(byOwner[o]); got != want {
			t.Fatalf("op %d: Checksum(%#x) = %#04x, want %#04x", op, o, got, want)
		}
		var got []key
		h.OwnedBy(o, func(e *Element) bool {
			if e.HomeServer != o {
				t.Fatalf("op %d: OwnedBy(%#x) returned home %#x", op, o, e.HomeServer)
			}
			got = append(got, key{e.Pool, e.ID})
			return true
		})
		cmpKeys := func(a, b key) int {
			if a.handle != b.handle {
				return bytes.Compare([]byte(a.handle), []byte(b.handle))
			}
			return int(a.id) - int(b.id)
		}
		slices.SortFunc(got, cmpKeys)
		want := slices.SortedFunc(slices.Values(byOwner[o]), cmpKeys)
		if !slices.Equal(got, want) || h.OwnedCount(o) != len(want) {
			t.Fatalf("op %d: OwnedBy(%#x) = %v, want %v", op, o, got, want)
		}
	}
	for handle, n := range pools {
		if h.PoolLen(wire.PoolHandle(handle)) != n {
			t.Fatalf("op %d: PoolLen(%q) = %d, want %d", op, handle, h.PoolLen(wire.PoolHandle(handle)), n)
		}
	}
}

func TestConsistencyRules(t *testing.T) {
	lu := wire.PolicyLeastUsed
	base := tcpPE(1, 9, lu)
	luTLV := []byte{0x00, 0x08, 0x00, 0x0c, 0x40, 0x00, 0x00, 0x01, 0, 0, 0, 0}
	tcpTLV := []byte{0x00, 0x05, 0x00, 0x10, 0x1b, 0x58, 0x00, 0x00, // TCP, port 7000, use 0
		0x00, 0x01, 0x00, 0x08, 10, 0, 0, 1} // IPv4 10.0.0.1
	for _, tc := range []struct {
		name   string
		handle wire.PoolHandle
		pe     func(*wire.PoolElement)
		code   wire.CauseCode
		info   []byte
	}{
		{"other policy", "P", func(pe *wire.PoolElement) { pe.Policy.Type = wire.PolicyRoundRobin }, wire.CauseInconsistentPolicy, luTLV},
		{"other transport", "P", func(pe *wire.PoolElement) { pe.User.Type = wire.TransportUDP }, wire.CauseInconsistentTransport, tcpTLV},
		{"other transport use", "P", func(pe *wire.PoolElement) { pe.User.Use = wire.UseDataAndControl }, wire.CauseInconsistentDataControl, tcpTLV},
		{"unknown policy", "Q", func(pe *wire.PoolElement) { pe.Policy = wire.Policy{Type: 0x40000009, Raw: []uint32{5}} },
			wire.CauseInvalidValues, []byte{0x00, 0x08, 0x00, 0x0c, 0x40, 0x00, 0x00, 0x09, 0, 0, 0, 5}},
		{"ID 0", "Q", func(pe *wire.PoolElement) { pe.ID = 0 }, wire.CauseInvalidValues, nil},
		{"empty handle", "", func(pe *wire.PoolElement) {}, wire.CauseInvalidValues, nil},
		{"re-registration with other policy", "P", func(pe *wire.PoolElement) { pe.ID = 1; pe.Policy.Type = wire.PolicyRandom },
			wire.CauseInconsistentPolicy, luTLV},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(Options{})
			mustRegister(t, h, "P", base)
			pe := tcpPE(2, 9, lu)
			tc.pe(&pe)
			e, _, err := h.Register(tc.handle, pe, t0)
			var rej *RejectError
			if !errors.As(err, &rej) || e != nil {
				t.Fatalf("Register = %v, %v; want *RejectError", e, err)
			}
			if rej.Code != tc.code {
				t.Errorf("code = %#x, want %#x", rej.Code, tc.code)
			}
			if diff := cmp.Diff(tc.info, rej.Info); diff != "" {
				t.Errorf("info (-want +got):\n%s", diff)
			}
			if h.NumElements() != 1 || h.NumPools() != 1 {
				t.Errorf("rejected registration changed the handlespace: %d elements", h.NumElements())
			}
			if got, _ := h.Get("P", 1); got.Policy().Type != lu {
				t.Error("existing PE changed")
			}
		})
	}
	// Matching PEs join; a new pool takes any combination.
	h := New(Options{})
	mustRegister(t, h, "P", base)
	mustRegister(t, h, "P", tcpPE(2, 3, lu))
	udp := tcpPE(3, 3, wire.PolicyRandom)
	udp.User.Type = wire.TransportUDP
	mustRegister(t, h, "Other", udp)
	if h.PoolLen("P") != 2 || h.PoolLen("Other") != 1 {
		t.Fatal("pool sizes")
	}
	if typ, ok := h.PoolPolicyType("Other"); !ok || typ != wire.PolicyRandom {
		t.Fatal("PoolPolicyType")
	}
}

func TestReregistration(t *testing.T) {
	h := New(Options{Rand: seeded(1)})
	pe := tcpPE(5, 1, wire.PolicyLeastUsedDegradation)
	pe.Policy.LoadDegradation = 100
	e := mustRegister(t, h, "P", pe)
	h.Resolve("P", 1, nil)
	h.ReportUnreachable("P", 5)
	h.SetExpiry("P", 5, t0.Add(time.Minute))
	if e.Degradation() != 100 {
		t.Fatalf("degradation = %d", e.Degradation())
	}
	pe2 := tcpPE(5, 2, wire.PolicyLeastUsedDegradation)
	pe2.Policy.Load = 7
	pe2.User.Addrs[0] = netip.MustParseAddr("192.0.2.1")
	e2, created, err := h.Register("P", pe2, t0.Add(time.Second))
	if err != nil || created || e2 != e {
		t.Fatalf("re-registration = %p %v %v, want the same element", e2, created, err)
	}
	want := Element{Pool: "P", ID: pe2.ID, HomeServer: pe2.HomeServer, RegistrationLife: pe2.RegistrationLife,
		Registered: t0, Updated: t0.Add(time.Second), Expiry: t0.Add(time.Minute), Unreachable: 1}
	if diff := cmp.Diff(pe2, e.PoolElement(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("pool element (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, *e, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String()[0] == '.' && !isExported(p.Last().String()[1:]) }, cmp.Ignore())); diff != "" {
		t.Fatalf("element (-want +got):\n%s", diff)
	}
	if e.Degradation() != 0 {
		t.Fatal("degradation not reset")
	}
	if h.Checksum(1) != 0xffff || h.Checksum(2) != refChecksum([]key{{"P", 5}}) {
		t.Fatal("ownership did not move")
	}
	// The element's slices are copies.
	pe2.User.Addrs[0] = netip.MustParseAddr("198.51.100.1")
	if e.User().Addrs[0] != netip.MustParseAddr("192.0.2.1") {
		t.Fatal("element aliases the caller's address slice")
	}
}

func isExported(s string) bool { return s != "" && s[0] >= 'A' && s[0] <= 'Z' }

func TestResolve(t *testing.T) {
	h := New(Options{Rand: seeded(1)})
	if _, _, ok := h.Resolve("none", 3, nil); ok {
		t.Fatal("unknown pool resolved")
	}
	for id := uint32(1); id <= 4; id++ {
		mustRegister(t, h, "RR", tcpPE(id, 1, wire.PolicyRoundRobin))
	}
	var got [][]uint32
	for range 4 {
		pol, es, ok := h.Resolve("RR", 3, nil)
		if !ok || pol.Type != wire.PolicyRoundRobin {
			t.Fatal("Resolve RR")
		}
		var ids []uint32
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		got = append(got, ids)
	}
	if diff := cmp.Diff([][]uint32{{1, 2, 3}, {2, 3, 4}, {3, 4, 1}, {4, 1, 2}}, got); diff != "" {
		t.Fatalf("RR resolutions (-want +got):\n%s", diff)
	}
	// Weighted random: at most n distinct, never weight 0; the overall policy
	// is the first PE's.
	for id := uint32(1); id <= 20; id++ {
		pe := tcpPE(id, 1, wire.PolicyWeightedRandom)
		pe.Policy.Weight = id % 5
		mustRegister(t, h, "W", pe)
	}
	for n := range 25 {
		pol, es, _ := h.Resolve("W", n, nil)
		if len(es) > n || len(es) > 16 {
			t.Fatalf("Resolve(%d) returned %d", n, len(es))
		}
		seen := map[uint32]bool{}
		for _, e := range es {
			if seen[e.ID] || e.Policy().Weight == 0 {
				t.Fatalf("Resolve(%d): PE %d twice or of weight 0", n, e.ID)
			}
			seen[e.ID] = true
		}
		if len(es) > 0 && !cmp.Equal(pol, es[0].Policy()) {
			t.Fatalf("overall policy %+v, first PE %+v", pol, es[0].Policy())
		}
	}
	// Nothing selectable: the pool's type only.
	pe := tcpPE(1, 1, wire.PolicyWeightedRandom)
	pe.Policy.Weight = 0
	mustRegister(t, h, "Z", pe)
	if pol, es, ok := h.Resolve("Z", 3, nil); !ok || len(es) != 0 || pol.Type != wire.PolicyWeightedRandom {
		t.Fatalf("Resolve(Z) = %+v %d %v", pol, len(es), ok)
	}
}

func TestIterationAndDeregister(t *testing.T) {
	h := New(Options{})
	for _, handle := range []wire.PoolHandle{"c", "a", "b"} {
		for _, id := range []uint32{30, 10, 20} {
			mustRegister(t, h, handle, tcpPE(id, 1, wire.PolicyRandom))
		}
	}
	var pools []wire.PoolHandle
	h.Pools(func(handle wire.PoolHandle, typ wire.PolicyType) bool {
		pools = append(pools, handle)
		return true
	})
	var ids []uint32
	h.Elements("b", func(e *Element) bool { ids = append(ids, e.ID); return len(ids) < 2 })
	if !slices.Equal(pools, []wire.PoolHandle{"a", "b", "c"}) || !slices.Equal(ids, []uint32{10, 20}) {
		t.Fatalf("Pools = %v, Elements = %v", pools, ids)
	}
	for _, id := range []uint32{30, 10, 20} {
		removed, ok := h.Deregister("b", id)
		if !ok || removed.ID != id || removed.Pool != "b" {
			t.Fatalf("Deregister(b, %d) = %+v %v", id, removed, ok)
		}
	}
	if _, ok := h.Deregister("b", 10); ok {
		t.Fatal("second Deregister succeeded")
	}
	if _, ok := h.PoolPolicyType("b"); ok || h.NumPools() != 2 {
		t.Fatal("empty pool not deleted")
	}
	if _, ok := h.ReportUnreachable("b", 10); ok || h.SetHome("b", 10, 1) || h.SetExpiry("b", 10, t0) {
		t.Fatal("operations on a removed PE succeeded")
	}
}

func TestExpiry(t *testing.T) {
	h := New(Options{})
	rng := seeded(3)
	want := map[uint32]time.Time{}
	for id := uint32(1); id <= 200; id++ {
		mustRegister(t, h, "P", tcpPE(id, 1, wire.PolicyRoundRobin))
		exp := t0.Add(time.Duration(rng.IntN(50)) * time.Second)
		h.SetExpiry("P", id, exp)
		want[id] = exp
	}
	for id := uint32(1); id <= 200; id += 4 {
		h.SetExpiry("P", id, time.Time{}) // never
		delete(want, id)
	}
	next, ok := h.NextExpiry()
	if !ok {
		t.Fatal("no NextExpiry")
	}
	for _, now := range []time.Time{t0.Add(-time.Second), t0, t0.Add(10 * time.Second), t0.Add(time.Hour)} {
		got := h.Expired(now, nil)
		n := 0
		for _, exp := range want {
			if !exp.After(now) {
				n++
			}
		}
		if len(got) != n {
			t.Fatalf("Expired(%v) = %d elements, want %d", now, len(got), n)
		}
		for i, e := range got {
			if !want[e.ID].Equal(e.Expiry) || (i > 0 && (e.Expiry.Before(got[i-1].Expiry) ||
				e.Expiry.Equal(got[i-1].Expiry) && e.ID < got[i-1].ID)) {
				t.Fatalf("Expired(%v) out of order at %d", now, i)
			}
		}
		if len(got) > 0 && !got[0].Expiry.Equal(next) {
			t.Fatalf("NextExpiry = %v, first expired %v", next, got[0].Expiry)
		}
	}
}

func TestMemoryPerPE(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100,000 PEs")
	}
	const n = 100000
	before := heapInUse()
	h := New(Options{})
	for id := uint32(1); id <= n; id++ {
		pe := tcpPE(id, 1, wire.PolicyLeastUsed)
		if _, _, err := h.Register("EchoPool", pe, t0); err != nil {
			t.Fatal(err)
		}
	}
	after := heapInUse()
	per := float64(after-before) / n
	t.Logf("%.0f bytes per PE (100,000 PEs, one IPv4 TCP transport each)", per)
	runtime.KeepAlive(h)
	if !raceEnabled && per > 512 {
		t.Fatalf("%.0f bytes per PE, want ≤ 512", per)
	}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func BenchmarkResolve(b *testing.B) {
	for _, typ := range []wire.PolicyType{wire.PolicyRoundRobin, wire.PolicyLeastUsed, wire.PolicyWeightedRandom} {
		for _, n := range []int{1000, 100000} {
			b.Run(fmt.Sprintf("%#x/%d", uint32(typ), n), func(b *testing.B) {
				h := New(Options{Rand: seeded(1)})
				rng := seeded(2)
				for id := uint32(1); id <= uint32(n); id++ {
					pe := tcpPE(id, 1, typ)
					pe.Policy.Load = rng.Uint32()
					mustRegister(b, h, "P", pe)
				}
				buf := make([]*Element, 0, 3)
				b.ReportAllocs()
				for b.Loop() {
					_, buf, _ = h.Resolve("P", 3, buf[:0])
				}
			})
		}
	}
}

func BenchmarkRegisterDeregister(b *testing.B) {
	h := New(Options{Rand: seeded(1)})
	for id := uint32(1); id <= 100000; id++ {
		mustRegister(b, h, "P", tcpPE(id, 1, wire.PolicyLeastUsed))
	}
	pe := tcpPE(200000, 2, wire.PolicyLeastUsed)
	b.ReportAllocs()
	for b.Loop() {
		h.Register("P", pe, t0)
		h.Deregister("P", pe.ID)
	}
}

func TestSnapshot(t *testing.T) {
	h := New(Options{Rand: seeded(1)})
	mustRegister(t, h, "b", tcpPE(2, 7, wire.PolicyLeastUsed))
	mustRegister(t, h, "b", tcpPE(1, 7, wire.PolicyLeastUsed))
	mustRegister(t, h, "a", tcpPE(3, 8, wire.PolicyRoundRobin))
	h.SetExpiry("a", 3, t0.Add(time.Second))
	h.Resolve("b", 1, nil)
	snap := h.Snapshot()
	exp := t0.Add(time.Second)
	want := []PoolSnapshot{
		{Handle: "a", Policy: "round-robin", PolicyType: wire.PolicyRoundRobin, Elements: []ElementSnapshot{
			{ID: 3, Home: 8, RegistrationLife: 30000, Transport: "tcp", Addrs: tcpPE(3, 8, 0).User.Addrs, Port: 7000,
				Policy: wire.Policy{Type: wire.PolicyRoundRobin, Weight: 1}, Registered: t0, Updated: t0, Expiry: &exp}}},
		{Handle: "b", Policy: "least-used", PolicyType: wire.PolicyLeastUsed, Elements: []ElementSnapshot{
			{ID: 1, Home: 7, RegistrationLife: 30000, Transport: "tcp", Addrs: tcpPE(1, 7, 0).User.Addrs, Port: 7000,
				Policy: wire.Policy{Type: wire.PolicyLeastUsed, Weight: 1}, Registered: t0, Updated: t0},
			{ID: 2, Home: 7, RegistrationLife: 30000, Transport: "tcp", Addrs: tcpPE(2, 7, 0).User.Addrs, Port: 7000,
				Policy: wire.Policy{Type: wire.PolicyLeastUsed, Weight: 1}, Registered: t0, Updated: t0, Selections: 1}}},
	}
	if diff := cmp.Diff(want, snap, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Fatalf("Snapshot (-want +got):\n%s", diff)
	}
}

// TestPoolElementRoundTrip checks that the compact Element gives back every
// part of the registered parameter: inline single addresses, several
// addresses, opaque data and the ASAP transport.
func TestPoolElementRoundTrip(t *testing.T) {
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	pes := []wire.PoolElement{
		{ID: 1, HomeServer: 2, RegistrationLife: 3,
			User:   wire.Transport{Type: wire.TransportTCP, Port: 7, Use: wire.UseDataAndControl, Addrs: []netip.Addr{a1}},
			Policy: wire.Policy{Type: wire.PolicyRoundRobin},
			ASAP:   wire.Transport{Type: wire.TransportSCTP, Port: 9, Addrs: []netip.Addr{a2}}},
		{ID: 2, User: wire.Transport{Type: wire.TransportTCP, Port: 7, Use: wire.UseDataAndControl, Addrs: []netip.Addr{a1, a2}},
			Policy: wire.Policy{Type: wire.PolicyRoundRobin, Raw: []uint32{5}},
			ASAP:   wire.Transport{Type: wire.TransportSCTP, Port: 9, Addrs: []netip.Addr{a2, a1}, Opaque: []byte{1}}},
		{ID: 3, User: wire.Transport{Type: wire.TransportTCP, Port: 7, Use: wire.UseDataAndControl, Opaque: []byte{4, 5}},
			Policy: wire.Policy{Type: wire.PolicyRoundRobin}},
	}
	h := New(Options{})
	for _, pe := range pes {
		e := mustRegister(t, h, "P", pe)
		if diff := cmp.Diff(pe, e.PoolElement(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("PE %d (-want +got):\n%s", pe.ID, diff)
		}
	}
	// A re-registration with fewer parts drops the old ones.
	e := mustRegister(t, h, "P", pes[0])
	pe := pes[1]
	pe.ID = 1
	e = mustRegister(t, h, "P", pe)
	pe.Policy = pes[1].Policy
	if diff := cmp.Diff(pe, e.PoolElement(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("re-registered (-want +got):\n%s", diff)
	}
	pe = pes[0]
	e = mustRegister(t, h, "P", pe)
	if diff := cmp.Diff(pe, e.PoolElement(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("re-registered back (-want +got):\n%s", diff)
	}
}
