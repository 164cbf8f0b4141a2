package wire

import (
	"encoding/binary"
	"net/netip"
)

// Parameter types this package decodes. Everything else is "unknown" and
// handled according to its action bits (RFC 5354 §5).
func knownParam(t uint16) bool {
	return t >= uint16(ParamIPv4Address) && t <= uint16(ParamOpaqueTransport) ||
		t == uint16(ParamHandleResolutionOption) || t == uint16(ParamHandleResolutionOption)&0x3fff
}

// decoder holds the state of one Parse call. s is a private copy of the
// message (one allocation), so pool handles are substrings of it and never
// alias the caller's buffer.
type decoder struct {
	s     string
	cp    []byte       // lazily made byte copy of s, for []byte fields
	addrs []netip.Addr // slab shared by all transports of the message
	unrec *Unrecognized
}

// tlv is one parameter: [off, end) is the parameter without its padding.
type tlv struct {
	typ      uint16
	off, end int
}

func (t tlv) val() int  { return t.off + 4 }
func (t tlv) size() int { return t.end - t.off - 4 }

// cursor walks the parameters inside a container that ends at end
// (unpadded; the last parameter may end there or, RSPLIB style, earlier).
type cursor struct {
	pos, end int
	have     bool
	t        tlv
}

func roundup4(n int) int { return (n + 3) &^ 3 }

func (d *decoder) u16(off int) uint16 { return uint16(d.s[off])<<8 | uint16(d.s[off+1]) }
func (d *decoder) u32(off int) uint32 {
	return uint32(d.s[off])<<24 | uint32(d.s[off+1])<<16 | uint32(d.s[off+2])<<8 | uint32(d.s[off+3])
}

// bytes returns a copy of s[i:j] (nil if empty) that does not alias the input.
func (d *decoder) bytes(i, j int) []byte {
	if i >= j {
		return nil
	}
	if d.cp == nil {
		d.cp = []byte(d.s)
	}
	return d.cp[i:j:j]
}

// peek returns the next known parameter of the container without consuming
// it; ok is false when the container is exhausted. Unknown parameters are
// skipped, recorded or reported as their action bits say.
func (d *decoder) peek(c *cursor) (t tlv, ok bool, err error) {
	if c.have {
		return c.t, true, nil
	}
	for c.pos < c.end {
		if c.end-c.pos < 4 {
			return tlv{}, false, perr(c.pos, 0, ErrTruncated)
		}
		typ := d.u16(c.pos)
		n := int(d.u16(c.pos + 2))
		if n < 4 {
			return tlv{}, false, perr(c.pos+2, typ, ErrLength)
		}
		if c.pos+n > c.end {
			return tlv{}, false, perr(c.pos+2, typ, ErrLength)
		}
		t = tlv{typ: typ, off: c.pos, end: c.pos + n}
		if knownParam(typ) {
			c.have, c.t = true, t
			return t, true, nil
		}
		switch typ & 0xc000 {
		case 0x0000:
			return tlv{}, false, perr(t.off, typ, ErrUnknownParameter)
		case 0x4000:
			e := perr(t.off, typ, ErrUnknownParameter)
			e.Param = []byte(d.s[t.off:t.end])
			return tlv{}, false, e
		case 0xc000:
			d.unrec.Unrecognized = append(d.unrec.Unrecognized, RawParam{Type: typ, TLV: d.bytes(t.off, t.end)})
		}
		c.pos = roundup4(t.end)
	}
	return tlv{}, false, nil
}

// take consumes the parameter returned by the last peek.
func (c *cursor) take() {
	c.pos = roundup4(c.t.end)
	c.have = false
}

// next returns the next known parameter and consumes it.
func (d *decoder) next(c *cursor) (tlv, bool, error) {
	t, ok, err := d.peek(c)
	if ok {
		c.take()
	}
	return t, ok, err
}

// want consumes the next parameter, which must be of type typ.
func (d *decoder) want(c *cursor, typ ParamType) (tlv, error) {
	t, ok, err := d.peek(c)
	if err != nil {
		return t, err
	}
	if !ok {
		return t, perr(c.pos, uint16(typ), ErrMissingParameter)
	}
	if t.typ != uint16(typ) {
		return t, perr(t.off, t.typ, ErrUnexpectedParameter)
	}
	c.take()
	return t, nil
}

// optional consumes the next parameter if it is of type typ.
func (d *decoder) optional(c *cursor, typ ParamType) (tlv, bool, error) {
	t, ok, err := d.peek(c)
	if err != nil || !ok || t.typ != uint16(typ) {
		return t, false, err
	}
	c.take()
	return t, true, nil
}

// done checks that no known parameter is left in the container.
func (d *decoder) done(c *cursor) error {
	t, ok, err := d.peek(c)
	if err != nil {
		return err
	}
	if ok {
		return perr(t.off, t.typ, ErrUnexpectedParameter)
	}
	return nil
}

// inner returns a cursor over the parameters inside t, starting at from.
func inner(t tlv, from int) cursor { return cursor{pos: from, end: t.end} }

// count returns how many consecutive parameters of type typ follow in c
// (headers are trusted only as far as the container bounds); it is used to
// size slices exactly and never exceeds what the input holds.
func (d *decoder) count(c cursor, typ ParamType, stop ParamType) int {
	n := 0
	for pos := c.pos; c.end-pos >= 4; {
		t := d.u16(pos)
		l := int(d.u16(pos + 2))
		if l < 4 || pos+l > c.end {
			break
		}
		if t == uint16(typ) {
			n++
		} else if t == uint16(stop) {
			break
		}
		pos = roundup4(pos + l)
	}
	return n
}

// maxAddrs returns an upper bound of the address parameters in the message:
// every parameter starts 4-byte aligned, and an address parameter's header
// is exactly 00 01 00 08 or 00 02 00 14. One slab of that size then holds
// all addresses without growing.
func (d *decoder) maxAddrs() int {
	n := 0
	for i := 4; i+4 <= len(d.s); i += 4 {
		if d.s[i] == 0 && d.s[i+2] == 0 &&
			(d.s[i+1] == 1 && d.s[i+3] == 8 || d.s[i+1] == 2 && d.s[i+3] == 20) {
			n++
		}
	}
	return n
}

// ---- parameter decoders ----

func (d *decoder) poolHandle(c *cursor) (PoolHandle, error) {
	t, err := d.want(c, ParamPoolHandle)
	if err != nil {
		return "", err
	}
	return PoolHandle(d.s[t.val():t.end]), nil
}

func (d *decoder) fixed(t tlv, n int) error {
	if t.size() != n {
		return perr(t.off+2, t.typ, ErrLength)
	}
	return nil
}

func (d *decoder) peID(c *cursor) (uint32, error) {
	t, err := d.want(c, ParamPEIdentifier)
	if err != nil {
		return 0, err
	}
	if err := d.fixed(t, 4); err != nil {
		return 0, err
	}
	return d.u32(t.val()), nil
}

func (d *decoder) address(t tlv) (netip.Addr, error) {
	switch ParamType(t.typ) {
	case ParamIPv4Address:
		if err := d.fixed(t, 4); err != nil {
			return netip.Addr{}, err
		}
		v := t.val()
		return netip.AddrFrom4([4]byte{d.s[v], d.s[v+1], d.s[v+2], d.s[v+3]}), nil
	case ParamIPv6Address:
		if err := d.fixed(t, 16); err != nil {
			return netip.Addr{}, err
		}
		var a [16]byte
		copy(a[:], d.s[t.val():t.end])
		// An IPv4-mapped IPv6 address is the IPv4 address: the encoder sends
		// it as an IPv4 Address parameter (as RSPLIB does), so decoding it
		// as IPv4 keeps decode→encode→decode stable.
		return netip.AddrFrom16(a).Unmap(), nil
	}
	return netip.Addr{}, perr(t.off, t.typ, ErrUnexpectedParameter)
}

func isTransport(t uint16) bool {
	switch TransportType(t) {
	case TransportDCCP, TransportSCTP, TransportTCP, TransportUDP, TransportUDPLite, TransportOpaque:
		return true
	}
	return false
}

// transport decodes a transport parameter (RFC 5354 §3.3-3.7, §3.16).
func (d *decoder) transport(t tlv, tr *Transport) error {
	tr.Type = TransportType(t.typ)
	v := t.val()
	fixed := 4
	switch tr.Type {
	case TransportOpaque:
		tr.Opaque = d.bytes(v, t.end)
		return nil
	case TransportDCCP:
		fixed = 8
	case TransportSCTP, TransportTCP, TransportUDP, TransportUDPLite:
	default:
		return perr(t.off, t.typ, ErrUnexpectedParameter)
	}
	if t.size() < fixed {
		return perr(t.off+2, t.typ, ErrLength)
	}
	tr.Port = d.u16(v)
	switch tr.Type {
	case TransportSCTP, TransportTCP:
		tr.Use = TransportUse(d.u16(v + 2))
	case TransportDCCP:
		tr.ServiceCode = d.u32(v + 4)
	}
	c := inner(t, v+fixed)
	start := len(d.addrs)
	for {
		at, ok, err := d.next(&c)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		a, err := d.address(at)
		if err != nil {
			return err
		}
		if tr.Type != TransportSCTP && len(d.addrs) > start {
			return perr(at.off, at.typ, ErrUnexpectedParameter)
		}
		if d.addrs == nil {
			d.addrs = make([]netip.Addr, 0, d.maxAddrs())
		}
		d.addrs = append(d.addrs, a)
	}
	if len(d.addrs) == start {
		return perr(c.pos, uint16(ParamIPv4Address), ErrMissingParameter)
	}
	tr.Addrs = d.addrs[start:len(d.addrs):len(d.addrs)]
	return nil
}

// wantTransport consumes the next parameter, which must be a transport.
func (d *decoder) wantTransport(c *cursor, tr *Transport) error {
	t, ok, err := d.peek(c)
	if err != nil {
		return err
	}
	if !ok {
		return perr(c.pos, uint16(TransportSCTP), ErrMissingParameter)
	}
	if !isTransport(t.typ) {
		return perr(t.off, t.typ, ErrUnexpectedParameter)
	}
	c.take()
	return d.transport(t, tr)
}

func (d *decoder) policy(t tlv, p *Policy) error {
	if t.size() < 4 {
		return perr(t.off+2, t.typ, ErrLength)
	}
	p.Type = PolicyType(d.u32(t.val()))
	f, n, known := p.fields()
	body := t.size() - 4
	v := t.val() + 4
	if known {
		if body < 4*n {
			return perr(t.off+2, t.typ, ErrLength)
		}
		for i := 0; i < n; i++ {
			*f[i] = d.u32(v + 4*i)
		}
		return nil
	}
	if body%4 != 0 {
		return perr(t.off+2, t.typ, ErrLength)
	}
	if body > 0 {
		p.Raw = make([]uint32, body/4)
		for i := range p.Raw {
			p.Raw[i] = d.u32(v + 4*i)
		}
	}
	return nil
}

func (d *decoder) wantPolicy(c *cursor, p *Policy) error {
	t, err := d.want(c, ParamPolicy)
	if err != nil {
		return err
	}
	return d.policy(t, p)
}

// poolElement decodes a Pool Element parameter into pe.
func (d *decoder) poolElement(t tlv, pe *PoolElement) error {
	if t.size() < 12 {
		return perr(t.off+2, t.typ, ErrLength)
	}
	v := t.val()
	pe.ID = d.u32(v)
	pe.HomeServer = d.u32(v + 4)
	pe.RegistrationLife = d.u32(v + 8)
	c := inner(t, v+12)
	if err := d.wantTransport(&c, &pe.User); err != nil {
		return err
	}
	if err := d.wantPolicy(&c, &pe.Policy); err != nil {
		return err
	}
	at, ok, err := d.peek(&c)
	if err != nil {
		return err
	}
	if ok {
		if !isTransport(at.typ) {
			return perr(at.off, at.typ, ErrUnexpectedParameter)
		}
		c.take()
		if err := d.transport(at, &pe.ASAP); err != nil {
			return err
		}
	}
	return d.done(&c)
}

// elements decodes the run of Pool Element parameters that follows in c.
func (d *decoder) elements(c *cursor) ([]PoolElement, error) {
	n := d.count(*c, ParamPoolElement, ParamPoolHandle)
	if n == 0 {
		return nil, nil
	}
	pes := make([]PoolElement, 0, n)
	for {
		t, ok, err := d.optional(c, ParamPoolElement)
		if err != nil {
			return nil, err
		}
		if !ok {
			return pes, nil
		}
		pes = append(pes, PoolElement{})
		if err := d.poolElement(t, &pes[len(pes)-1]); err != nil {
			return nil, err
		}
	}
}

func (d *decoder) serverInfo(t tlv, si *ServerInfo) error {
	if t.size() < 4 {
		return perr(t.off+2, t.typ, ErrLength)
	}
	si.ServerID = d.u32(t.val())
	c := inner(t, t.val()+4)
	if err := d.wantTransport(&c, &si.Transport); err != nil {
		return err
	}
	return d.done(&c)
}

// operationError decodes an Operation Error parameter (RFC 5354 §3.12).
func (d *decoder) operationError(t tlv) (OperationError, error) {
	var oe OperationError
	n := 0
	for pos := t.val(); t.end-pos >= 4; pos = roundup4(pos + int(d.u16(pos+2))) {
		if d.u16(pos+2) < 4 {
			break
		}
		n++
	}
	oe.Causes = make([]ErrorCause, 0, n)
	pos := t.val()
	for pos < t.end {
		if t.end-pos < 4 {
			return oe, perr(pos, t.typ, ErrTruncated)
		}
		l := int(d.u16(pos + 2))
		if l < 4 || pos+l > t.end {
			return oe, perr(pos+2, t.typ, ErrLength)
		}
		oe.Causes = append(oe.Causes, ErrorCause{Code: CauseCode(d.u16(pos)), Info: d.bytes(pos+4, pos+l)})
		pos = roundup4(pos + l)
	}
	if len(oe.Causes) == 0 {
		return oe, perr(t.off, t.typ, ErrMissingParameter)
	}
	return oe, nil
}

func (d *decoder) optionalOpError(c *cursor) (*OperationError, error) {
	t, ok, err := d.optional(c, ParamOperationError)
	if err != nil || !ok {
		return nil, err
	}
	oe, err := d.operationError(t)
	if err != nil {
		return nil, err
	}
	return &oe, nil
}

// ---- message framing ----

// Parse decodes one message of protocol p. The returned message does not
// alias b. b must hold exactly one message: its Message Length may or may
// not count the final padding (RFC 5354 or RSPLIB style), and at most the
// 0-3 padding bytes may follow it.
func Parse(p Protocol, b []byte) (Message, error) {
	if len(b) < 4 {
		return nil, perr(0, 0, ErrTruncated)
	}
	typ := b[0]
	l := int(binary.BigEndian.Uint16(b[2:]))
	if l < 4 || l > len(b) {
		return nil, perr(2, uint16(typ), ErrLength)
	}
	if len(b) > roundup4(l) {
		return nil, perr(roundup4(l), uint16(typ), ErrPadding)
	}
	switch p {
	case ASAP:
		return parseASAP(b, l)
	case ENRP:
		return parseENRP(b, l)
	}
	return nil, perr(0, uint16(typ), ErrUnknownMessage)
}

// ParseASAP decodes one ASAP message.
func ParseASAP(b []byte) (Message, error) { return Parse(ASAP, b) }

// ParseENRP decodes one ENRP message.
func ParseENRP(b []byte) (Message, error) { return Parse(ENRP, b) }

// Marshal returns the encoding of m in a new slice.
func Marshal(m Message) ([]byte, error) { return m.AppendBinary(make([]byte, 0, 128)) }
