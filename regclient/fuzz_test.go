package regclient

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/rserpool/rserpool/internal/fuzzprog"
	"github.com/rserpool/rserpool/internal/rsplibvec"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Operation codes of a fuzz program.
const (
	opRequest = iota // kind, handle length, handle, ID
	opDial           // attempt index, ok
	opReceive        // protocol, stale, length (u16), message bytes
	opAnswer         // a response built for a pending request, keys possibly off
	opLose           // the connection fails
	opAdvance        // milliseconds (u16)
	opLearn          // scheme, IPv4 (u32), port (u16)
	opCancel         // pending index
	opWant           // on
	opProbed         // check index, ok (Config.Rebalance)
	opCount
)

// fuzzConfig keeps every bound small so that a program reaches it.
var fuzzConfig = Config{
	Registrars:       []transport.Addr{transport.MustParseAddr("10.0.0.1:3863"), transport.MustParseAddr("sctp://10.0.0.2:3863")},
	ConnectTimeout:   2 * time.Second,
	RetranMax:        8 * time.Second,
	RetryInterval:    time.Second,
	RequestTimeout:   time.Second,
	MaxRetransmit:    2,
	AnnounceLifetime: 5 * time.Second,
	MaxLearned:       4,
	MaxPending:       16,
	Rebalance:        2 * time.Second,
}

// tracked is one request of a fuzz run.
type tracked struct {
	at    time.Time
	msg   wire.Message
	done  int
	resp  wire.Message
	err   error
	token *Pending
}

// fuzzHandler records what the client tells a Handler.
type fuzzHandler struct {
	up, down, failed, msgs int
}

func (h *fuzzHandler) Up(time.Time, transport.Addr)    { h.up++ }
func (h *fuzzHandler) Down(time.Time, error)           { h.down++ }
func (h *fuzzHandler) Message(time.Time, wire.Message) { h.msgs++ }
func (h *fuzzHandler) HuntFailed(time.Time, error)     { h.failed++ }
func (h *fuzzHandler) Tick(now time.Time) time.Time    { return time.Time{} }

// runClient runs a fuzz program against a Sim and checks the invariants
// after every step: bounded state (Sim.Check), every request completed
// exactly once, never later than (MaxRetransmit+1) × T1 after it was made,
// and an answer only to what was asked. At the end time runs on until no
// request is left.
func runClient(t *testing.T, data []byte) {
	h := &fuzzHandler{}
	cfg := fuzzConfig
	cfg.Handler = h
	cfg.Rand = rand.New(rand.NewPCG(1, 2))
	s := NewSim(cfg)
	l := s.Link()
	now := t0
	var reqs []*tracked
	limit := time.Duration(cfg.MaxRetransmit+1) * cfg.RequestTimeout
	check := func(op int) {
		t.Helper()
		if err := s.Check(); err != nil {
			t.Fatalf("op %d: %v", op, err)
		}
		for i, r := range reqs {
			switch {
			case r.done > 1:
				t.Fatalf("op %d: request %d (%T) completed %d times", op, i, r.msg, r.done)
			case r.done == 0 && now.Sub(r.at) >= limit:
				t.Fatalf("op %d: request %d (%T) from %v still pending at %v", op, i, r.msg, r.at.Sub(t0), now.Sub(t0))
			case r.done == 1 && r.resp != nil && !answers(r.msg, r.resp):
				t.Fatalf("op %d: request %d %T answered by %T %+v", op, i, r.msg, r.resp, r.resp)
			}
		}
	}
	p := fuzzprog.New(data)
	for op := 0; p.More() && op < 2000; op++ {
		switch p.Byte() % opCount {
		case opRequest:
			m := fuzzRequest(p)
			r := &tracked{at: now, msg: m}
			reqs = append(reqs, r)
			r.token = l.Request(now, m, func(_ time.Time, resp wire.Message, err error) {
				r.done++
				r.resp, r.err = resp, err
			})
			s.Collect()
		case opDial:
			i, ok := int(p.Byte()), p.Byte()&1 == 1
			if n := len(s.Attempts()); n > 0 {
				var err error
				if !ok {
					err = fmt.Errorf("refused")
				}
				s.Dialed(now, i%n, err)
			}
		case opReceive:
			proto, stale := wire.Protocol(1+p.Byte()%2), p.Byte()%8 == 0
			if m, err := wire.Parse(proto, p.Bytes(int(p.U16()%2048))); err == nil {
				s.Receive(now, m, stale)
			}
		case opAnswer:
			var open []*tracked
			for _, r := range reqs {
				if r.done == 0 {
					open = append(open, r)
				}
			}
			if len(open) > 0 {
				s.Receive(now, fuzzAnswer(p, open[int(p.Byte())%len(open)].msg), false)
			}
		case opLose:
			s.Lose(now)
		case opAdvance:
			now = now.Add(time.Duration(p.U16()) * time.Millisecond)
			s.Advance(now)
		case opLearn:
			scheme := []transport.Scheme{transport.SchemeTCP, transport.SchemeSCTP}[p.Byte()%2]
			ip := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, p.U32())))
			s.Learn(now, transport.AddrFrom(scheme, netip.AddrPortFrom(ip, p.U16())))
		case opCancel:
			if len(reqs) > 0 {
				reqs[int(p.Byte())%len(reqs)].token.Cancel(now)
				s.Collect()
			}
		case opWant:
			l.Want(p.Byte()&1 == 1)
			s.Collect()
		case opProbed:
			i, ok := int(p.Byte()), p.Byte()&1 == 1
			if n := len(s.Probes()); n > 0 {
				var err error
				if !ok {
					err = fmt.Errorf("refused")
				}
				s.Probed(now, i%n, err)
			}
		}
		s.Advance(now)
		check(op)
	}
	// Time runs on: every request ends.
	for range 100 {
		next := s.Next()
		if next.IsZero() || s.Pending() == 0 {
			break
		}
		if next.After(now) {
			now = next
		}
		s.Advance(now)
		check(-1)
	}
	if s.Pending() != 0 {
		t.Fatalf("%d requests still pending at the end", s.Pending())
	}
}

// fuzzRequest builds a request from the program.
func fuzzRequest(p *fuzzprog.Program) wire.Message {
	kind := p.Byte() % 6
	handle := wire.PoolHandle(p.Bytes(int(p.Byte() % 8)))
	if handle == "" {
		handle = "P"
	}
	id := p.U32()
	switch kind {
	case 0:
		return &wire.HandleResolution{PoolHandle: handle, HasItems: id&1 == 1, Items: id}
	case 1:
		pe := wire.PoolElement{ID: id, RegistrationLife: 1000, Policy: wire.Policy{Type: wire.PolicyRoundRobin},
			User: wire.Transport{Type: wire.TransportTCP, Port: 1, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}}}
		return &wire.Registration{PoolHandle: handle, Element: pe}
	case 2:
		return &wire.Deregistration{PoolHandle: handle, ID: id}
	case 3:
		return &wire.HandleTableRequest{Sender: id}
	case 4:
		return &wire.ListRequest{Sender: id}
	}
	return &wire.Deregistration{PoolHandle: handle, ID: id}
}

// fuzzAnswer builds a response to req whose keys the program may change
// (a response to something never asked).
func fuzzAnswer(p *fuzzprog.Program, req wire.Message) wire.Message {
	f := p.Byte()
	switch r := req.(type) {
	case *wire.HandleResolution:
		h := r.PoolHandle
		if f&1 == 1 {
			h = ""
		}
		resp := &wire.HandleResolutionResponse{PoolHandle: h}
		if f&2 == 2 {
			resp.Error = &wire.OperationError{Causes: []wire.ErrorCause{{Code: wire.CauseUnknownPoolHandle}}}
		}
		return resp
	case *wire.Registration:
		return &wire.RegistrationResponse{PoolHandle: r.PoolHandle, ID: r.Element.ID ^ uint32(f&1), Reject: f&2 == 2}
	case *wire.Deregistration:
		return &wire.DeregistrationResponse{PoolHandle: r.PoolHandle, ID: r.ID + uint32(f&1)}
	case *wire.HandleTableRequest:
		return &wire.HandleTableResponse{Sender: r.Sender, More: f&1 == 1}
	case *wire.ListRequest:
		return &wire.ListResponse{Sender: r.Sender, Reject: f&1 == 1}
	}
	return &wire.ASAPError{}
}

// answers reports whether resp can be the answer to req.
func answers(req, resp wire.Message) bool {
	switch r := resp.(type) {
	case *wire.HandleResolutionResponse:
		q, ok := req.(*wire.HandleResolution)
		return ok && (q.PoolHandle == r.PoolHandle || r.PoolHandle == "" && r.Error != nil)
	case *wire.RegistrationResponse:
		q, ok := req.(*wire.Registration)
		return ok && q.PoolHandle == r.PoolHandle && q.Element.ID == r.ID
	case *wire.DeregistrationResponse:
		q, ok := req.(*wire.Deregistration)
		return ok && q.PoolHandle == r.PoolHandle && q.ID == r.ID
	case *wire.HandleTableResponse:
		_, ok := req.(*wire.HandleTableRequest)
		return ok
	case *wire.ListResponse:
		_, ok := req.(*wire.ListRequest)
		return ok
	}
	return false
}

// FuzzClient drives the client's core with a hostile registrar: any ASAP
// or ENRP message in any order (responses to requests never sent,
// keep-alives for unknown PEs with the H bit, errors, announces), from the
// current or an old connection, interleaved with requests, dial results,
// connection losses, announced registrars and time passing.
func FuzzClient(f *testing.F) {
	seed := func(ops ...[]byte) {
		var b []byte
		for _, o := range ops {
			b = append(b, o...)
		}
		f.Add(b)
	}
	up := []byte{opRequest, 0, 1, 'P', 0, 0, 0, 1, opDial, 0, 1}
	for _, v := range rsplibvec.Load(f) {
		n := len(v.Data)
		recv := append([]byte{opReceive, byte(v.Protocol) - 1, 1, byte(n >> 8), byte(n)}, v.Data...)
		seed(up, recv, []byte{opAdvance, 0x0b, 0xb8})
		seed(up, []byte{opLose, opDial, 0, 1}, recv, []byte{opAdvance, 0x27, 0x10})
	}
	seed(up, []byte{opAnswer, 0, 0})
	seed(up, []byte{opAnswer, 0, 3, opAnswer, 0, 1})
	seed([]byte{opWant, 1, opDial, 0, 0, opDial, 0, 0, opAdvance, 0x07, 0xd0, opLearn, 1, 10, 0, 0, 3, 0x0f, 0x17})
	seed(up, []byte{opRequest, 1, 1, 'Q', 0, 0, 0, 2, opAdvance, 0x03, 0xe8, opDial, 0, 1, opAdvance, 0x03, 0xe8, opCancel, 0})
	f.Fuzz(func(t *testing.T, data []byte) { runClient(t, data) })
}
