package wire

// ASAP messages (RFC 5352 §2.2, wire-format.md §4). Each decoder gets the
// message body as a cursor over the top-level parameters.

func parseASAP(b []byte, l int) (Message, error) {
	typ, flags := b[0], b[1]
	d := decoder{s: string(b[:l])}
	c := cursor{pos: 4, end: l}
	var (
		m   Message
		err error
	)
	switch typ {
	case TypeRegistration:
		x := &Registration{}
		d.unrec, m = &x.Unrecognized, x
		if x.PoolHandle, err = d.poolHandle(&c); err != nil {
			break
		}
		var t tlv
		if t, err = d.want(&c, ParamPoolElement); err != nil {
			break
		}
		err = d.poolElement(t, &x.Element)
	case TypeDeregistration:
		x := &Deregistration{}
		d.unrec, m = &x.Unrecognized, x
		x.PoolHandle, x.ID, err = d.handleAndID(&c)
	case TypeRegistrationResponse:
		x := &RegistrationResponse{Reject: flags&0x01 != 0}
		d.unrec, m = &x.Unrecognized, x
		if x.PoolHandle, x.ID, err = d.handleAndID(&c); err == nil {
			x.Error, err = d.optionalOpError(&c)
		}
	case TypeDeregistrationResponse:
		x := &DeregistrationResponse{}
		d.unrec, m = &x.Unrecognized, x
		if x.PoolHandle, x.ID, err = d.handleAndID(&c); err == nil {
			x.Error, err = d.optionalOpError(&c)
		}
	case TypeHandleResolution:
		x := &HandleResolution{Subscribe: flags&0x01 != 0}
		d.unrec, m = &x.Unrecognized, x
		if x.PoolHandle, err = d.poolHandle(&c); err != nil {
			break
		}
		var t tlv
		var ok bool
		if t, ok, err = d.peek(&c); err != nil || !ok {
			break
		}
		if t.typ == uint16(ParamHandleResolutionOption) || t.typ == uint16(ParamHandleResolutionOption)&0x3fff {
			c.take()
			if err = d.fixed(t, 4); err == nil {
				x.HasItems, x.Items = true, d.u32(t.val())
			}
		}
	case TypeHandleResolutionResponse:
		// One allocation for the message and its overall policy.
		a := &struct {
			m HandleResolutionResponse
			p Policy
		}{}
		x := &a.m
		x.Accept = flags&0x01 != 0
		d.unrec, m = &x.Unrecognized, x
		if x.PoolHandle, err = d.poolHandle(&c); err != nil {
			break
		}
		var t tlv
		var ok bool
		if t, ok, err = d.optional(&c, ParamPolicy); err != nil {
			break
		} else if ok {
			if err = d.policy(t, &a.p); err != nil {
				break
			}
			x.Policy = &a.p
		}
		if x.Elements, err = d.elements(&c); err != nil {
			break
		}
		x.Error, err = d.optionalOpError(&c)
	case TypeEndpointKeepAlive:
		x := &EndpointKeepAlive{Home: flags&0x01 != 0}
		d.unrec, m = &x.Unrecognized, x
		if l < 8 {
			return nil, perr(2, uint16(typ), ErrLength)
		}
		x.ServerID = d.u32(4)
		c.pos = 8
		if x.PoolHandle, err = d.poolHandle(&c); err != nil {
			break
		}
		var ok bool
		if _, ok, err = d.peek(&c); err == nil && ok {
			x.HasID = true
			x.ID, err = d.peID(&c)
		}
	case TypeEndpointKeepAliveAck:
		x := &EndpointKeepAliveAck{}
		d.unrec, m = &x.Unrecognized, x
		x.PoolHandle, x.ID, err = d.handleAndID(&c)
	case TypeEndpointUnreachable:
		x := &EndpointUnreachable{}
		d.unrec, m = &x.Unrecognized, x
		x.PoolHandle, x.ID, err = d.handleAndID(&c)
	case TypeServerAnnounce:
		x := &ServerAnnounce{}
		d.unrec, m = &x.Unrecognized, x
		if l < 8 {
			return nil, perr(2, uint16(typ), ErrLength)
		}
		x.ServerID = d.u32(4)
		c.pos = 8
		for {
			var t tlv
			var ok bool
			if t, ok, err = d.peek(&c); err != nil || !ok {
				break
			}
			if !isTransport(t.typ) {
				break // reported by done below
			}
			c.take()
			x.Transports = append(x.Transports, Transport{})
			if err = d.transport(t, &x.Transports[len(x.Transports)-1]); err != nil {
				break
			}
		}
	case TypeCookie:
		x := &Cookie{}
		d.unrec, m = &x.Unrecognized, x
		x.Cookie, err = d.cookie(&c)
	case TypeCookieEcho:
		x := &CookieEcho{}
		d.unrec, m = &x.Unrecognized, x
		x.Cookie, err = d.cookie(&c)
	case TypeBusinessCard:
		x := &BusinessCard{}
		d.unrec, m = &x.Unrecognized, x
		if x.PoolHandle, err = d.poolHandle(&c); err != nil {
			break
		}
		var t tlv
		var ok bool
		if t, ok, err = d.optional(&c, ParamPolicy); err != nil {
			break
		} else if ok {
			p := new(Policy)
			if err = d.policy(t, p); err != nil {
				break
			}
			x.Policy = p
		}
		x.Elements, err = d.elements(&c)
	case TypeASAPError:
		x := &ASAPError{}
		d.unrec, m = &x.Unrecognized, x
		var t tlv
		if t, err = d.want(&c, ParamOperationError); err == nil {
			x.Error, err = d.operationError(t)
		}
	default:
		return nil, perr(0, uint16(typ), ErrUnknownMessage)
	}
	if err == nil {
		err = d.done(&c)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (d *decoder) handleAndID(c *cursor) (PoolHandle, uint32, error) {
	h, err := d.poolHandle(c)
	if err != nil {
		return h, 0, err
	}
	id, err := d.peID(c)
	return h, id, err
}

func (d *decoder) cookie(c *cursor) ([]byte, error) {
	t, err := d.want(c, ParamCookie)
	if err != nil {
		return nil, err
	}
	return d.bytes(t.val(), t.end), nil
}

// ---- ASAP encoders ----

func (*Registration) Protocol() Protocol { return ASAP }
func (*Registration) Type() uint8        { return TypeRegistration }

// AppendBinary appends the encoded message to b.
func (m *Registration) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeRegistration, 0)
	e.poolHandle(m.PoolHandle)
	e.poolElement(&m.Element)
	return e.finish()
}

func (*Deregistration) Protocol() Protocol { return ASAP }
func (*Deregistration) Type() uint8        { return TypeDeregistration }

// AppendBinary appends the encoded message to b.
func (m *Deregistration) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeDeregistration, 0)
	e.poolHandle(m.PoolHandle)
	e.peID(m.ID)
	return e.finish()
}

func (*RegistrationResponse) Protocol() Protocol { return ASAP }
func (*RegistrationResponse) Type() uint8        { return TypeRegistrationResponse }

// AppendBinary appends the encoded message to b.
func (m *RegistrationResponse) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeRegistrationResponse, flag(m.Reject, 0x01))
	e.poolHandle(m.PoolHandle)
	e.peID(m.ID)
	if m.Error != nil {
		e.operationError(m.Error)
	}
	return e.finish()
}

func (*DeregistrationResponse) Protocol() Protocol { return ASAP }
func (*DeregistrationResponse) Type() uint8        { return TypeDeregistrationResponse }

// AppendBinary appends the encoded message to b.
func (m *DeregistrationResponse) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeDeregistrationResponse, 0)
	e.poolHandle(m.PoolHandle)
	e.peID(m.ID)
	if m.Error != nil {
		e.operationError(m.Error)
	}
	return e.finish()
}

func (*HandleResolution) Protocol() Protocol { return ASAP }
func (*HandleResolution) Type() uint8        { return TypeHandleResolution }

// AppendBinary appends the encoded message to b.
func (m *HandleResolution) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeHandleResolution, flag(m.Subscribe, 0x01))
	e.poolHandle(m.PoolHandle)
	if m.HasItems {
		s := e.begin(ParamHandleResolutionOption)
		e.u32(m.Items)
		e.end(s)
	}
	return e.finish()
}

func (*HandleResolutionResponse) Protocol() Protocol { return ASAP }
func (*HandleResolutionResponse) Type() uint8        { return TypeHandleResolutionResponse }

// AppendBinary appends the encoded message to b: Pool Handle, [Policy],
// Pool Elements, [Operation Error].
func (m *HandleResolutionResponse) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeHandleResolutionResponse, flag(m.Accept, 0x01))
	e.poolHandle(m.PoolHandle)
	if m.Policy != nil {
		e.policy(m.Policy)
	}
	for i := range m.Elements {
		e.poolElement(&m.Elements[i])
	}
	if m.Error != nil {
		e.operationError(m.Error)
	}
	return e.finish()
}

func (*EndpointKeepAlive) Protocol() Protocol { return ASAP }
func (*EndpointKeepAlive) Type() uint8        { return TypeEndpointKeepAlive }

// AppendBinary appends the encoded message to b.
func (m *EndpointKeepAlive) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeEndpointKeepAlive, flag(m.Home, 0x01))
	e.u32(m.ServerID)
	e.poolHandle(m.PoolHandle)
	if m.HasID {
		e.peID(m.ID)
	}
	return e.finish()
}

func (*EndpointKeepAliveAck) Protocol() Protocol { return ASAP }
func (*EndpointKeepAliveAck) Type() uint8        { return TypeEndpointKeepAliveAck }

// AppendBinary appends the encoded message to b.
func (m *EndpointKeepAliveAck) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeEndpointKeepAliveAck, 0)
	e.poolHandle(m.PoolHandle)
	e.peID(m.ID)
	return e.finish()
}

func (*EndpointUnreachable) Protocol() Protocol { return ASAP }
func (*EndpointUnreachable) Type() uint8        { return TypeEndpointUnreachable }

// AppendBinary appends the encoded message to b.
func (m *EndpointUnreachable) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeEndpointUnreachable, 0)
	e.poolHandle(m.PoolHandle)
	e.peID(m.ID)
	return e.finish()
}

func (*ServerAnnounce) Protocol() Protocol { return ASAP }
func (*ServerAnnounce) Type() uint8        { return TypeServerAnnounce }

// AppendBinary appends the encoded message to b.
func (m *ServerAnnounce) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeServerAnnounce, 0)
	e.u32(m.ServerID)
	for i := range m.Transports {
		e.transport(&m.Transports[i])
	}
	return e.finish()
}

func (*Cookie) Protocol() Protocol { return ASAP }
func (*Cookie) Type() uint8        { return TypeCookie }

// AppendBinary appends the encoded message to b.
func (m *Cookie) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeCookie, 0)
	e.bytesParam(ParamCookie, m.Cookie)
	return e.finish()
}

func (*CookieEcho) Protocol() Protocol { return ASAP }
func (*CookieEcho) Type() uint8        { return TypeCookieEcho }

// AppendBinary appends the encoded message to b.
func (m *CookieEcho) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeCookieEcho, 0)
	e.bytesParam(ParamCookie, m.Cookie)
	return e.finish()
}

func (*BusinessCard) Protocol() Protocol { return ASAP }
func (*BusinessCard) Type() uint8        { return TypeBusinessCard }

// AppendBinary appends the encoded message to b. The Policy parameter is
// sent only when set (RSPLIB's variant).
func (m *BusinessCard) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeBusinessCard, 0)
	e.poolHandle(m.PoolHandle)
	if m.Policy != nil {
		e.policy(m.Policy)
	}
	for i := range m.Elements {
		e.poolElement(&m.Elements[i])
	}
	return e.finish()
}

func (*ASAPError) Protocol() Protocol { return ASAP }
func (*ASAPError) Type() uint8        { return TypeASAPError }

// AppendBinary appends the encoded message to b.
func (m *ASAPError) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeASAPError, 0)
	e.operationError(&m.Error)
	return e.finish()
}
