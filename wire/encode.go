package wire

import "net/netip"

// enc appends one message to b. Lengths are written after the body; a
// parameter is padded only when the next one begins (or the message ends),
// so that every Length excludes the padding after its last byte (RFC 5354).
type enc struct {
	b    []byte
	base int // offset of the message in b: padding is relative to it
	err  error
}

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u16(v uint16) { e.b = append(e.b, byte(v>>8), byte(v)) }
func (e *enc) u32(v uint32) { e.b = append(e.b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v)) }

func (e *enc) pad() {
	for (len(e.b)-e.base)&3 != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *enc) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// begin starts a parameter and returns its offset for end.
func (e *enc) begin(t ParamType) int {
	e.pad()
	s := len(e.b)
	e.b = append(e.b, byte(t>>8), byte(t), 0, 0)
	return s
}

// end writes the Length of the parameter started at s.
func (e *enc) end(s int) {
	n := len(e.b) - s
	if n > 0xffff {
		e.fail(ErrTooLong)
		return
	}
	e.b[s+2], e.b[s+3] = byte(n>>8), byte(n)
}

func newEnc(b []byte, typ, flags uint8) enc {
	e := enc{b: b, base: len(b)}
	e.b = append(e.b, typ, flags, 0, 0)
	return e
}

// finish writes the Message Length and pads the message.
func (e *enc) finish() ([]byte, error) {
	n := len(e.b) - e.base
	if n > 0xffff {
		e.fail(ErrTooLong)
	}
	if e.err != nil {
		return e.b[:e.base], e.err
	}
	e.b[e.base+2], e.b[e.base+3] = byte(n>>8), byte(n)
	e.pad()
	return e.b, nil
}

func flag(v bool, bit uint8) uint8 {
	if v {
		return bit
	}
	return 0
}

// ---- parameter encoders ----

func (e *enc) poolHandle(h PoolHandle) {
	s := e.begin(ParamPoolHandle)
	e.b = append(e.b, h...)
	e.end(s)
}

func (e *enc) peID(id uint32) {
	s := e.begin(ParamPEIdentifier)
	e.u32(id)
	e.end(s)
}

func (e *enc) address(a netip.Addr) {
	switch {
	case a.Is4() || a.Is4In6():
		s := e.begin(ParamIPv4Address)
		v := a.Unmap().As4()
		e.b = append(e.b, v[:]...)
		e.end(s)
	case a.Is6():
		s := e.begin(ParamIPv6Address)
		v := a.As16()
		e.b = append(e.b, v[:]...)
		e.end(s)
	default:
		e.fail(ErrBadAddress)
	}
}

func (e *enc) transport(t *Transport) {
	switch t.Type {
	case TransportOpaque:
		s := e.begin(ParamOpaqueTransport)
		e.b = append(e.b, t.Opaque...)
		e.end(s)
		return
	case TransportSCTP:
		if len(t.Addrs) == 0 {
			e.fail(ErrBadTransport)
			return
		}
	case TransportTCP, TransportUDP, TransportUDPLite, TransportDCCP:
		if len(t.Addrs) != 1 {
			e.fail(ErrBadTransport)
			return
		}
	default:
		e.fail(ErrBadTransport)
		return
	}
	s := e.begin(ParamType(t.Type))
	e.u16(t.Port)
	switch t.Type {
	case TransportSCTP, TransportTCP:
		e.u16(uint16(t.Use))
	case TransportDCCP:
		e.u16(0)
		e.u32(t.ServiceCode)
	default:
		e.u16(0)
	}
	for _, a := range t.Addrs {
		e.address(a)
	}
	e.end(s)
}

func (e *enc) policy(p *Policy) {
	s := e.begin(ParamPolicy)
	e.u32(uint32(p.Type))
	f, n, known := p.fields()
	if known {
		for i := 0; i < n; i++ {
			e.u32(*f[i])
		}
	} else {
		for _, v := range p.Raw {
			e.u32(v)
		}
	}
	e.end(s)
}

func (e *enc) poolElement(pe *PoolElement) {
	s := e.begin(ParamPoolElement)
	e.u32(pe.ID)
	e.u32(pe.HomeServer)
	e.u32(pe.RegistrationLife)
	e.transport(&pe.User)
	e.policy(&pe.Policy)
	if pe.ASAP.Type != 0 {
		e.transport(&pe.ASAP)
	}
	e.end(s)
}

func (e *enc) serverInfo(si *ServerInfo) {
	s := e.begin(ParamServerInformation)
	e.u32(si.ServerID)
	e.transport(&si.Transport)
	e.end(s)
}

func (e *enc) operationError(oe *OperationError) {
	if len(oe.Causes) == 0 {
		e.fail(ErrNoCause)
		return
	}
	s := e.begin(ParamOperationError)
	for i := range oe.Causes {
		c := &oe.Causes[i]
		e.pad()
		cs := len(e.b)
		e.u16(uint16(c.Code))
		e.u16(0)
		e.b = append(e.b, c.Info...)
		e.end(cs)
	}
	e.end(s)
}

func (e *enc) bytesParam(t ParamType, v []byte) {
	s := e.begin(t)
	e.b = append(e.b, v...)
	e.end(s)
}
