package wire

// ENRP messages (RFC 5353 §2, wire-format.md §5). Every message starts with
// the common header and the Sending and Receiving Server IDs.

func parseENRP(b []byte, l int) (Message, error) {
	typ, flags := b[0], b[1]
	min := 12
	switch typ {
	case TypeInitTakeover, TypeInitTakeoverAck, TypeTakeoverServer:
		min = 16
	case TypeHandleUpdate:
		min = 16
	}
	if typ == 0 || typ > TypeENRPError {
		return nil, perr(0, uint16(typ), ErrUnknownMessage)
	}
	if l < min {
		return nil, perr(2, uint16(typ), ErrLength)
	}
	d := decoder{s: string(b[:l])}
	snd, rcv := d.u32(4), d.u32(8)
	c := cursor{pos: 12, end: l}
	var (
		m   Message
		err error
	)
	switch typ {
	case TypePresence:
		// One allocation for the message and its Server Information.
		a := &struct {
			m  Presence
			si ServerInfo
		}{m: Presence{ReplyRequired: flags&0x01 != 0, Sender: snd, Receiver: rcv}}
		x := &a.m
		d.unrec, m = &x.Unrecognized, x
		var t tlv
		if t, err = d.want(&c, ParamPEChecksum); err != nil {
			break
		}
		if err = d.fixed(t, 2); err != nil {
			break
		}
		x.Checksum = d.u16(t.val())
		var ok bool
		if t, ok, err = d.optional(&c, ParamServerInformation); err != nil || !ok {
			break
		}
		if err = d.serverInfo(t, &a.si); err == nil {
			x.Info = &a.si
		}
	case TypeHandleTableRequest:
		x := &HandleTableRequest{OwnChildrenOnly: flags&0x01 != 0, Sender: snd, Receiver: rcv}
		d.unrec, m = &x.Unrecognized, x
	case TypeHandleTableResponse:
		x := &HandleTableResponse{Reject: flags&0x01 != 0, More: flags&0x02 != 0, Sender: snd, Receiver: rcv}
		d.unrec, m = &x.Unrecognized, x
		err = d.poolEntries(&c, x)
	case TypeHandleUpdate:
		x := &HandleUpdate{TakeoverSuggested: flags&0x01 != 0, Sender: snd, Receiver: rcv}
		d.unrec, m = &x.Unrecognized, x
		x.Action = UpdateAction(d.u16(12))
		c.pos = 16
		if x.PoolHandle, err = d.poolHandle(&c); err != nil {
			break
		}
		var t tlv
		if t, err = d.want(&c, ParamPoolElement); err == nil {
			err = d.poolElement(t, &x.Element)
		}
	case TypeListRequest:
		x := &ListRequest{Sender: snd, Receiver: rcv}
		d.unrec, m = &x.Unrecognized, x
	case TypeListResponse:
		x := &ListResponse{Reject: flags&0x01 != 0, Sender: snd, Receiver: rcv}
		d.unrec, m = &x.Unrecognized, x
		if n := d.count(c, ParamServerInformation, 0); n > 0 {
			x.Servers = make([]ServerInfo, 0, n)
		}
		for {
			var t tlv
			var ok bool
			if t, ok, err = d.optional(&c, ParamServerInformation); err != nil || !ok {
				break
			}
			x.Servers = append(x.Servers, ServerInfo{})
			if err = d.serverInfo(t, &x.Servers[len(x.Servers)-1]); err != nil {
				break
			}
		}
	case TypeInitTakeover:
		x := &InitTakeover{Sender: snd, Receiver: rcv, Target: d.u32(12)}
		d.unrec, m = &x.Unrecognized, x
		c.pos = 16
	case TypeInitTakeoverAck:
		x := &InitTakeoverAck{Sender: snd, Receiver: rcv, Target: d.u32(12)}
		d.unrec, m = &x.Unrecognized, x
		c.pos = 16
	case TypeTakeoverServer:
		x := &TakeoverServer{Sender: snd, Receiver: rcv, Target: d.u32(12)}
		d.unrec, m = &x.Unrecognized, x
		c.pos = 16
	case TypeENRPError:
		x := &ENRPError{Sender: snd, Receiver: rcv}
		d.unrec, m = &x.Unrecognized, x
		var t tlv
		if t, err = d.want(&c, ParamOperationError); err == nil {
			x.Error, err = d.operationError(t)
		}
	}
	if err == nil {
		err = d.done(&c)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// poolEntries decodes the { Pool Handle, PE+ }* list of a Handle Table
// Response. All elements share one slice.
func (d *decoder) poolEntries(c *cursor, x *HandleTableResponse) error {
	npools := d.count(*c, ParamPoolHandle, 0)
	if npools == 0 {
		return nil
	}
	x.Pools = make([]PoolEntry, 0, npools)
	slab := make([]PoolElement, 0, d.count(*c, ParamPoolElement, 0))
	for {
		h, ok, err := d.optional(c, ParamPoolHandle)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		start := len(slab)
		for {
			t, ok, err := d.optional(c, ParamPoolElement)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			slab = append(slab, PoolElement{})
			if err := d.poolElement(t, &slab[len(slab)-1]); err != nil {
				return err
			}
		}
		if len(slab) == start {
			return perr(c.pos, uint16(ParamPoolElement), ErrMissingParameter)
		}
		x.Pools = append(x.Pools, PoolEntry{
			PoolHandle: PoolHandle(d.s[h.val():h.end]),
			Elements:   slab[start:len(slab):len(slab)],
		})
	}
}

// ---- ENRP encoders ----

func newENRP(b []byte, typ, flags uint8, snd, rcv uint32) enc {
	e := newEnc(b, typ, flags)
	e.u32(snd)
	e.u32(rcv)
	return e
}

func (*Presence) Protocol() Protocol { return ENRP }
func (*Presence) Type() uint8        { return TypePresence }

// AppendBinary appends the encoded message to b.
func (m *Presence) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypePresence, flag(m.ReplyRequired, 0x01), m.Sender, m.Receiver)
	s := e.begin(ParamPEChecksum)
	e.u16(m.Checksum)
	e.end(s)
	if m.Info != nil {
		e.serverInfo(m.Info)
	}
	return e.finish()
}

func (*HandleTableRequest) Protocol() Protocol { return ENRP }
func (*HandleTableRequest) Type() uint8        { return TypeHandleTableRequest }

// AppendBinary appends the encoded message to b.
func (m *HandleTableRequest) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypeHandleTableRequest, flag(m.OwnChildrenOnly, 0x01), m.Sender, m.Receiver)
	return e.finish()
}

func (*HandleTableResponse) Protocol() Protocol { return ENRP }
func (*HandleTableResponse) Type() uint8        { return TypeHandleTableResponse }

// AppendBinary appends the encoded message to b.
func (m *HandleTableResponse) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypeHandleTableResponse, flag(m.Reject, 0x01)|flag(m.More, 0x02), m.Sender, m.Receiver)
	for i := range m.Pools {
		p := &m.Pools[i]
		e.poolHandle(p.PoolHandle)
		for j := range p.Elements {
			e.poolElement(&p.Elements[j])
		}
	}
	return e.finish()
}

func (*HandleUpdate) Protocol() Protocol { return ENRP }
func (*HandleUpdate) Type() uint8        { return TypeHandleUpdate }

// AppendBinary appends the encoded message to b.
func (m *HandleUpdate) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypeHandleUpdate, flag(m.TakeoverSuggested, 0x01), m.Sender, m.Receiver)
	e.u16(uint16(m.Action))
	e.u16(0)
	e.poolHandle(m.PoolHandle)
	e.poolElement(&m.Element)
	return e.finish()
}

func (*ListRequest) Protocol() Protocol { return ENRP }
func (*ListRequest) Type() uint8        { return TypeListRequest }

// AppendBinary appends the encoded message to b.
func (m *ListRequest) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypeListRequest, 0, m.Sender, m.Receiver)
	return e.finish()
}

func (*ListResponse) Protocol() Protocol { return ENRP }
func (*ListResponse) Type() uint8        { return TypeListResponse }

// AppendBinary appends the encoded message to b.
func (m *ListResponse) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypeListResponse, flag(m.Reject, 0x01), m.Sender, m.Receiver)
	for i := range m.Servers {
		e.serverInfo(&m.Servers[i])
	}
	return e.finish()
}

func (*InitTakeover) Protocol() Protocol { return ENRP }
func (*InitTakeover) Type() uint8        { return TypeInitTakeover }

// AppendBinary appends the encoded message to b.
func (m *InitTakeover) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypeInitTakeover, 0, m.Sender, m.Receiver)
	e.u32(m.Target)
	return e.finish()
}

func (*InitTakeoverAck) Protocol() Protocol { return ENRP }
func (*InitTakeoverAck) Type() uint8        { return TypeInitTakeoverAck }

// AppendBinary appends the encoded message to b.
func (m *InitTakeoverAck) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypeInitTakeoverAck, 0, m.Sender, m.Receiver)
	e.u32(m.Target)
	return e.finish()
}

func (*TakeoverServer) Protocol() Protocol { return ENRP }
func (*TakeoverServer) Type() uint8        { return TypeTakeoverServer }

// AppendBinary appends the encoded message to b.
func (m *TakeoverServer) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypeTakeoverServer, 0, m.Sender, m.Receiver)
	e.u32(m.Target)
	return e.finish()
}

func (*ENRPError) Protocol() Protocol { return ENRP }
func (*ENRPError) Type() uint8        { return TypeENRPError }

// AppendBinary appends the encoded message to b.
func (m *ENRPError) AppendBinary(b []byte) ([]byte, error) {
	e := newENRP(b, TypeENRPError, 0, m.Sender, m.Receiver)
	e.operationError(&m.Error)
	return e.finish()
}
