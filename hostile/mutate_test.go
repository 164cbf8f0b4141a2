package hostile

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
)

// span is one parameter (TLV) found in a message: its bytes [off, end)
// without padding, and the offsets of the parameters that contain it.
type span struct {
	off, end int
	parents  []int
}

// innerOffset tells where the nested parameters of a container parameter
// start, counted from the parameter's first byte (RFC 5354 §3).
var innerOffset = map[uint16]int{
	0x0004: 8,  // SCTP Transport: port, use, addresses
	0x0005: 8,  // TCP Transport
	0x0006: 8,  // UDP Transport
	0x000a: 16, // Pool Element: ID, home, life, transports, policy
	0x000b: 8,  // Server Information: ID, transport
	0x000d: 4,  // Operation Error: causes
}

// params lists every parameter of msg that a consistent walk finds, at
// every depth. ENRP messages have 8 or 12 bytes of fields before their
// parameters; the start that finds the most parameters wins.
func params(msg []byte) []span {
	var best []span
	for _, start := range []int{4, 8, 12, 16} {
		var out []span
		walk(msg, start, len(msg), nil, &out)
		if len(out) > len(best) {
			best = out
		}
	}
	return best
}

func walk(b []byte, from, to int, parents []int, out *[]span) {
	for o := from; o+4 <= to; {
		typ := binary.BigEndian.Uint16(b[o:]) & 0x3fff
		l := int(binary.BigEndian.Uint16(b[o+2:]))
		if l < 4 || o+l > to {
			return
		}
		*out = append(*out, span{o, o + l, parents})
		if skip, ok := innerOffset[typ]; ok && skip < l {
			walk(b, o+skip, o+l, append(slices.Clone(parents), o), out)
		}
		o += (l + 3) &^ 3
	}
}

// grow adds n bytes to the length fields of the parameters at parents and
// of the message header (16-bit fields: they wrap, and then lie).
func grow(b []byte, parents []int, n int) {
	for _, p := range append(parents, 0) {
		binary.BigEndian.PutUint16(b[p+2:], binary.BigEndian.Uint16(b[p+2:])+uint16(n))
	}
}

// lie returns a length that is likely wrong for something of n bytes.
func lie(r *rand.Rand, n int) uint16 {
	c := []int{0, 1, 2, 3, 4, 5, n - 1, n + 1, n + 3, n + 4, n * 2, 0xfffc, 0xffff, r.IntN(65536)}
	return uint16(c[r.IntN(len(c))])
}

// Mutation kinds.
const (
	mutBitFlip = iota
	mutCut
	mutMsgLength
	mutParamLength
	mutUnknownMsgType
	mutUnknownParam
	mutRepeatParam
	mutRandomBytes
	mutWordLength
	mutKinds
)

// mutate returns a broken copy of msg: bit flips, a cut, a message or
// parameter length that lies, an unknown message or parameter type, a
// parameter repeated until the message is giant, or random bytes.
func mutate(r *rand.Rand, msg []byte) []byte {
	b := slices.Clone(msg)
	if len(b) < 4 {
		return b
	}
	ps := params(b)
	switch r.IntN(mutKinds) {
	case mutBitFlip:
		for range 1 + r.IntN(4) {
			b[r.IntN(len(b))] ^= 1 << r.IntN(8)
		}
	case mutCut:
		b = b[:r.IntN(len(b))]
	case mutMsgLength:
		binary.BigEndian.PutUint16(b[2:], lie(r, len(b)))
	case mutParamLength:
		if len(ps) > 0 {
			p := ps[r.IntN(len(ps))]
			binary.BigEndian.PutUint16(b[p.off+2:], lie(r, p.end-p.off))
		}
	case mutUnknownMsgType:
		b[0] = uint8(0x0f + r.IntN(0xf0)) // every type above the known ones, all action bits
	case mutUnknownParam:
		// An unknown parameter with one of the four action-bit patterns,
		// at the end of the message or inside a container.
		val := make([]byte, r.IntN(64))
		for i := range val {
			val[i] = byte(r.Uint32())
		}
		typ := uint16(r.IntN(4))<<14 | uint16(0x1000+r.IntN(0x2000))
		tlv := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, typ), uint16(4+len(val)))
		tlv = append(tlv, val...)
		for len(tlv)%4 != 0 {
			tlv = append(tlv, 0)
		}
		at, parents := len(b), []int(nil)
		if len(ps) > 0 && r.IntN(2) == 0 {
			p := ps[r.IntN(len(ps))]
			at, parents = p.off, p.parents
		}
		b = slices.Insert(b, at, tlv...)
		grow(b, parents, len(tlv))
	case mutRepeatParam:
		if len(ps) > 0 {
			p := ps[r.IntN(len(ps))]
			one := b[p.off:min(len(b), (p.end+3)&^3)]
			target := []int{4000, 8200, 65000, 70000}[r.IntN(4)]
			k := max(1, (target-len(b))/max(len(one), 4))
			rep := make([]byte, 0, k*len(one))
			for range k {
				rep = append(rep, one...)
			}
			b = slices.Insert(b, p.off, rep...)
			grow(b, p.parents, len(rep))
		}
	case mutRandomBytes:
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	case mutWordLength:
		// a random 16-bit field at a 4-byte boundary: hits nested lengths
		o := (r.IntN(len(b)/4))*4 + 2
		if o+2 <= len(b) {
			binary.BigEndian.PutUint16(b[o:], lie(r, len(b)-o))
		}
	}
	return b
}

// randomHandleRegistration returns an ASAP Registration whose Pool Handle
// is h, followed by the Pool Element parameter pe. Lengths are written as
// the 16-bit fields they are: above 65535 bytes they wrap and lie.
func randomHandleRegistration(h, pe []byte) []byte {
	b := []byte{wireTypeRegistration, 0, 0, 0, 0x00, 0x09}
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(h)))
	b = append(b, h...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, pe...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

const wireTypeRegistration = 0x01
