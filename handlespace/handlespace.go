package handlespace

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/rserpool/rserpool/policy"
	"github.com/rserpool/rserpool/wire"
)

// Element is one pool element of the handlespace: what the registration
// carried (ID, HomeServer = owner, RegistrationLife, the user transport,
// policy and ASAP transport; PoolElement reconstructs the parameter) and the
// registrar's bookkeeping.
//
// The representation is compact (the memory budget is about 500 bytes per PE
// in a registrar): the first user address is stored inline and the rarely
// used parts (more addresses, opaque transport data, the ASAP transport) sit
// behind a pointer that is nil in the common case; the policy values live
// only in the selection entry.
//
// Pointers returned by the Handlespace stay valid until the element is
// removed; its fields change in place on re-registration. Callers must not
// modify an Element; use the Handlespace methods.
type Element struct {
	Pool             wire.PoolHandle
	ID               uint32
	HomeServer       uint32    // Home ENRP Server Identifier; 0 = undetermined
	RegistrationLife uint32    // as registered (RSPLIB: milliseconds)
	Registered       time.Time // first registration
	Updated          time.Time // last (re-)registration or update from a peer
	Expiry           time.Time // zero = never expires
	Unreachable      int       // ENDPOINT_UNREACHABLE reports received

	// Owner is the registrar's own per-PE state (its keep-alive record),
	// kept here so that it needs no index of its own. The handlespace never
	// reads it; it is dropped with the element.
	Owner any

	user       transportHead // user transport without its addresses
	asap       transportHead // ASAP transport without its addresses; typ 0 = absent
	addr       [1]netip.Addr // the user address when there is exactly one
	asapAddr   [1]netip.Addr // the ASAP address when there is exactly one
	more       *elementExtra // nil unless the PE needs it
	entry      policy.Entry  // selection state in the pool's selector; holds the Policy
	heapIndex  int32         // index in the expiry heap, -1 when not in it
	ownerIndex int32         // index in the owner's element list
}

// transportHead is a wire.Transport without its slices.
type transportHead struct {
	typ         wire.TransportType
	port        uint16
	use         wire.TransportUse
	serviceCode uint32
}

// elementExtra holds the parts of a PE that most PEs do not have.
type elementExtra struct {
	userAddrs  []netip.Addr // used instead of Element.addr unless exactly one
	asapAddrs  []netip.Addr // used instead of Element.asapAddr unless exactly one
	userOpaque []byte
	asapOpaque []byte
}

func headOf(t *wire.Transport) transportHead {
	return transportHead{typ: t.Type, port: t.Port, use: t.Use, serviceCode: t.ServiceCode}
}

// single reports whether addrs is exactly one valid address, which an
// Element stores inline.
func single(addrs []netip.Addr) bool { return len(addrs) == 1 && addrs[0].IsValid() }

// transport rebuilds a wire.Transport; the address slice is inline[:1] or
// more, whichever holds the addresses.
func (h transportHead) transport(inline *[1]netip.Addr, more []netip.Addr, opaque []byte) wire.Transport {
	t := wire.Transport{Type: h.typ, Port: h.port, Use: h.use, ServiceCode: h.serviceCode, Opaque: opaque}
	switch {
	case len(more) > 0:
		t.Addrs = more
	case inline[0].IsValid():
		t.Addrs = inline[:1:1]
	}
	return t
}

// setPE stores the registration's values in e; the slices of pe are copied.
func (e *Element) setPE(pe *wire.PoolElement) {
	e.ID, e.HomeServer, e.RegistrationLife = pe.ID, pe.HomeServer, pe.RegistrationLife
	u, a := &pe.User, &pe.ASAP
	e.user, e.asap = headOf(u), headOf(a)
	e.addr, e.asapAddr = [1]netip.Addr{}, [1]netip.Addr{}
	e.more = nil
	if single(u.Addrs) {
		e.addr[0] = u.Addrs[0]
	}
	if single(a.Addrs) {
		e.asapAddr[0] = a.Addrs[0]
	}
	if (len(u.Addrs) > 0 && !single(u.Addrs)) || (len(a.Addrs) > 0 && !single(a.Addrs)) ||
		len(u.Opaque) > 0 || len(a.Opaque) > 0 {
		x := &elementExtra{
			userOpaque: slices.Clip(slices.Clone(u.Opaque)),
			asapOpaque: slices.Clip(slices.Clone(a.Opaque)),
		}
		if !single(u.Addrs) {
			x.userAddrs = slices.Clip(slices.Clone(u.Addrs))
		}
		if !single(a.Addrs) {
			x.asapAddrs = slices.Clip(slices.Clone(a.Addrs))
		}
		e.more = x
	}
}

// User returns the user transport. Its slices belong to the element and must
// not be modified.
func (e *Element) User() wire.Transport {
	if e.more == nil {
		return e.user.transport(&e.addr, nil, nil)
	}
	return e.user.transport(&e.addr, e.more.userAddrs, e.more.userOpaque)
}

// ASAP returns the ASAP transport (Type 0 = absent). Its slices belong to the
// element and must not be modified.
func (e *Element) ASAP() wire.Transport {
	if e.more == nil {
		return e.asap.transport(&e.asapAddr, nil, nil)
	}
	return e.asap.transport(&e.asapAddr, e.more.asapAddrs, e.more.asapOpaque)
}

// Policy returns the PE's policy parameter. Raw belongs to the element and
// must not be modified.
func (e *Element) Policy() wire.Policy { return e.entry.Policy }

// PoolElement returns the Pool Element parameter as registered (the current
// values after re-registrations and updates). It does not allocate; its
// slices belong to the element and must not be modified.
func (e *Element) PoolElement() wire.PoolElement {
	return wire.PoolElement{
		ID:               e.ID,
		HomeServer:       e.HomeServer,
		RegistrationLife: e.RegistrationLife,
		User:             e.User(),
		Policy:           e.entry.Policy,
		ASAP:             e.ASAP(),
	}
}

// Selections returns how often the element was returned by Resolve.
func (e *Element) Selections() uint64 { return e.entry.Selections() }

// Degradation returns the element's accumulated load degradation
// (policies.md §4).
func (e *Element) Degradation() uint32 { return e.entry.Degradation() }

// RejectError is a registration rejected by the pool consistency rules
// (RFC 5352 §3.1) or for invalid values. Code and Info go into the Operation
// Error of the ASAP_REGISTRATION_RESPONSE (R=1).
type RejectError struct {
	Code wire.CauseCode
	Info []byte // cause information: the offending or expected TLV, without padding
	Msg  string // human-readable reason
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("handlespace: registration rejected (cause 0x%04x): %s", uint16(e.Code), e.Msg)
}

// Options configure a Handlespace.
type Options struct {
	// Rand drives the random policies of every pool; nil = seeded randomly.
	Rand *rand.Rand
	// MaxIncrement is passed to every pool's selector (policy.Options).
	// 0 = each policy's default.
	MaxIncrement int
}

// Handlespace holds pools and their pool elements, indexed for selection,
// per-owner checksums, ownership and expiry. It does no I/O and starts no
// goroutines; all times are passed in. It is not safe for concurrent use: one
// goroutine owns it.
type Handlespace struct {
	opts     Options
	rng      *rand.Rand
	pools    map[wire.PoolHandle]*pool
	owners   map[uint32]*owner
	expiry   expiryHeap
	elements int
	scratch  []*policy.Entry
}

type pool struct {
	handle    wire.PoolHandle
	policy    wire.PolicyType
	transport wire.TransportType
	use       wire.TransportUse
	elements  map[uint32]*Element
	selector  policy.Selector
}

type owner struct {
	sum   wire.ChecksumSum
	elems []*Element // Element.ownerIndex is the position
}

// New returns an empty Handlespace.
func New(opts Options) *Handlespace {
	rng := opts.Rand
	if rng == nil {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Handlespace{
		opts:   opts,
		rng:    rng,
		pools:  make(map[wire.PoolHandle]*pool),
		owners: make(map[uint32]*owner),
	}
}

// Register adds pe to pool handle, or re-registers it when the pool already
// holds a PE with the same ID, enforcing the pool consistency rules of
// RFC 5352 §3.1:
//
//   - a new pool takes the PE's policy type, user transport type and Transport
//     Use;
//   - a PE joining or re-registering must match them, else the error is a
//     *RejectError with cause 0x5 (Info = a Policy TLV with the pool's policy
//     type), 0x7 (Info = the User Transport TLV of a PE of the pool) or 0x8
//     (Info = the same Transport TLV);
//   - a policy type this implementation cannot select by is rejected with
//     0x3 Invalid Values and the PE's Policy TLV as Info (RFC 5352 has no
//     dedicated code; RSPLIB's private 0x100b/0xf003 are unknown to RFC
//     peers); an empty pool handle or PE ID 0 likewise with 0x3 and no Info.
//
// A re-registration replaces every attribute in place (policy values per
// policies.md §4, ownership := pe.HomeServer, Updated := now) and keeps
// Registered, Expiry and the Unreachable count. created reports whether the
// PE was new. The Element is owned by the Handlespace; the slices of pe are
// copied.
func (h *Handlespace) Register(handle wire.PoolHandle, pe wire.PoolElement, now time.Time) (e *Element, created bool, err error) {
	switch {
	case handle == "":
		return nil, false, &RejectError{Code: wire.CauseInvalidValues, Msg: "empty pool handle"}
	case pe.ID == 0:
		return nil, false, &RejectError{Code: wire.CauseInvalidValues, Msg: "PE identifier 0"}
	case !policy.Supported(pe.Policy.Type):
		return nil, false, &RejectError{Code: wire.CauseInvalidValues, Info: policyTLV(pe.Policy),
			Msg: fmt.Sprintf("unsupported policy type 0x%08x", uint32(pe.Policy.Type))}
	}
	p := h.pools[handle]
	if p != nil {
		if err := p.check(&pe); err != nil {
			return nil, false, err
		}
	} else {
		sel, err := policy.NewWithOptions(pe.Policy.Type, policy.Options{Rand: h.rng, MaxIncrement: h.opts.MaxIncrement})
		if err != nil {
			return nil, false, &RejectError{Code: wire.CauseInvalidValues, Info: policyTLV(pe.Policy), Msg: err.Error()}
		}
		p = &pool{
			handle:    handle,
			policy:    pe.Policy.Type,
			transport: pe.User.Type,
			use:       pe.User.Use,
			elements:  make(map[uint32]*Element),
			selector:  sel,
		}
		h.pools[handle] = p
	}
	newPolicy := pe.Policy
	newPolicy.Raw = slices.Clip(slices.Clone(newPolicy.Raw))
	if e = p.elements[pe.ID]; e != nil {
		oldHome := e.HomeServer
		e.setPE(&pe)
		e.Updated = now
		p.selector.Update(&e.entry, newPolicy)
		if oldHome != pe.HomeServer {
			e.HomeServer = oldHome
			h.unown(e)
			e.HomeServer = pe.HomeServer
			h.own(e)
		}
		return e, false, nil
	}
	e = &Element{
		Pool:       p.handle,
		Registered: now,
		Updated:    now,
		heapIndex:  -1,
	}
	e.setPE(&pe)
	e.entry = policy.Entry{ID: pe.ID, Policy: newPolicy, Value: e}
	p.selector.Insert(&e.entry)
	p.elements[pe.ID] = e
	h.own(e)
	h.elements++
	return e, true, nil
}

// check applies the consistency rules 2 and 3 of RFC 5352 §3.1.
func (p *pool) check(pe *wire.PoolElement) error {
	if pe.Policy.Type != p.policy {
		return &RejectError{Code: wire.CauseInconsistentPolicy, Info: policyTLV(wire.Policy{Type: p.policy}),
			Msg: fmt.Sprintf("pool policy is 0x%08x, PE has 0x%08x", uint32(p.policy), uint32(pe.Policy.Type))}
	}
	if pe.User.Type != p.transport {
		return &RejectError{Code: wire.CauseInconsistentTransport, Info: p.transportTLV(),
			Msg: fmt.Sprintf("pool transport type is 0x%04x, PE has 0x%04x", uint16(p.transport), uint16(pe.User.Type))}
	}
	if pe.User.Use != p.use {
		return &RejectError{Code: wire.CauseInconsistentDataControl, Info: p.transportTLV(),
			Msg: fmt.Sprintf("pool transport use is %d, PE has %d", p.use, pe.User.Use)}
	}
	return nil
}

// transportTLV encodes the user transport of one PE of the pool.
func (p *pool) transportTLV() []byte {
	for _, e := range p.elements {
		return transportTLV(e.User())
	}
	return nil
}

// own adds e to the list and checksum of its HomeServer.
func (h *Handlespace) own(e *Element) {
	o := h.owners[e.HomeServer]
	if o == nil {
		o = &owner{}
		h.owners[e.HomeServer] = o
	}
	o.sum = o.sum.Add(wire.PEChecksumPart(e.Pool, e.ID))
	e.ownerIndex = int32(len(o.elems))
	o.elems = append(o.elems, e)
}

// unown removes e from the list and checksum of its HomeServer.
func (h *Handlespace) unown(e *Element) {
	o := h.owners[e.HomeServer]
	o.sum = o.sum.Sub(wire.PEChecksumPart(e.Pool, e.ID))
	last := len(o.elems) - 1
	moved := o.elems[last]
	o.elems[e.ownerIndex] = moved
	moved.ownerIndex = e.ownerIndex
	o.elems[last] = nil
	o.elems = o.elems[:last]
	e.ownerIndex = -1
	switch {
	case last == 0:
		delete(h.owners, e.HomeServer)
	case cap(o.elems) > 64 && last < cap(o.elems)/4:
		o.elems = slices.Clone(o.elems) // give memory back after mass removals
	}
}

// Deregister removes PE id from pool handle and deletes the pool when it
// becomes empty. It returns a copy of the removed element.
func (h *Handlespace) Deregister(handle wire.PoolHandle, id uint32) (removed Element, ok bool) {
	p := h.pools[handle]
	if p == nil {
		return Element{}, false
	}
	e := p.elements[id]
	if e == nil {
		return Element{}, false
	}
	p.selector.Remove(&e.entry)
	delete(p.elements, id)
	h.unown(e)
	if e.heapIndex >= 0 {
		h.expiry.remove(e)
	}
	h.elements--
	if len(p.elements) == 0 {
		delete(h.pools, handle)
	}
	return *e, true // the entry is detached: the copy keeps its counters only
}

func (h *Handlespace) get(handle wire.PoolHandle, id uint32) *Element {
	if p := h.pools[handle]; p != nil {
		return p.elements[id]
	}
	return nil
}

// Get returns the element with the given pool handle and ID.
func (h *Handlespace) Get(handle wire.PoolHandle, id uint32) (*Element, bool) {
	e := h.get(handle, id)
	return e, e != nil
}

// Resolve selects up to n distinct elements of pool handle by the pool's
// policy (policies.md), applies the policy's update step, appends them to dst
// and returns the extended slice. pool is the overall Policy parameter to
// send: the first selected PE's complete Policy, as RSPLIB does (only the
// pool's policy type when nothing was selected). ok is false when the pool
// does not exist.
func (h *Handlespace) Resolve(handle wire.PoolHandle, n int, dst []*Element) (pool wire.Policy, out []*Element, ok bool) {
	p := h.pools[handle]
	if p == nil {
		return wire.Policy{}, dst, false
	}
	h.scratch = p.selector.Select(n, h.scratch[:0])
	start := len(dst)
	for _, en := range h.scratch {
		dst = append(dst, en.Value.(*Element))
	}
	clear(h.scratch)
	if len(dst) > start {
		return dst[start].Policy(), dst, true
	}
	return wire.Policy{Type: p.policy}, dst, true
}

// ReportUnreachable counts one ENDPOINT_UNREACHABLE report for the PE and
// returns the new count. The caller decides whether to remove the PE.
func (h *Handlespace) ReportUnreachable(handle wire.PoolHandle, id uint32) (count int, ok bool) {
	e := h.get(handle, id)
	if e == nil {
		return 0, false
	}
	e.Unreachable++
	return e.Unreachable, true
}

// SetHome changes the owner (Home ENRP Server ID) of a PE, for example after
// a takeover, and moves it between the per-owner checksums. It reports
// whether the PE exists.
func (h *Handlespace) SetHome(handle wire.PoolHandle, id uint32, home uint32) bool {
	e := h.get(handle, id)
	if e == nil {
		return false
	}
	if e.HomeServer != home {
		h.unown(e)
		e.HomeServer = home
		h.own(e)
	}
	return true
}

// SetExpiry sets the time at which the PE expires; the zero time means never.
// It reports whether the PE exists.
func (h *Handlespace) SetExpiry(handle wire.PoolHandle, id uint32, t time.Time) bool {
	e := h.get(handle, id)
	if e == nil {
		return false
	}
	h.expiry.set(e, t)
	return true
}

// Expired appends to dst the elements whose Expiry is not after now, in
// ascending Expiry order (ties by pool handle, then ID), and returns the
// extended slice. It does not remove them. O(k log k) for k results.
func (h *Handlespace) Expired(now time.Time, dst []*Element) []*Element {
	return h.expiry.upTo(now, dst)
}

// NextExpiry returns the earliest Expiry of all elements, for arming a timer.
func (h *Handlespace) NextExpiry() (time.Time, bool) {
	if len(h.expiry) == 0 {
		return time.Time{}, false
	}
	return h.expiry[0].Expiry, true
}

// Checksum returns the RFC 5353 §3.6.2 PE checksum over the PEs whose home is
// owner (0xffff when it owns none). It is maintained incrementally: O(1).
func (h *Handlespace) Checksum(owner uint32) uint16 {
	if o := h.owners[owner]; o != nil {
		return o.sum.Checksum()
	}
	return wire.ChecksumSum(0).Checksum()
}

// Owners returns, in ascending order, the IDs of the servers owning at least
// one PE. The slice is the caller's.
func (h *Handlespace) Owners() []uint32 {
	return slices.Sorted(maps.Keys(h.owners))
}

// OwnedCount returns the number of PEs whose home is owner.
func (h *Handlespace) OwnedCount(owner uint32) int {
	if o := h.owners[owner]; o != nil {
		return len(o.elems)
	}
	return 0
}

// NumPools returns the number of pools.
func (h *Handlespace) NumPools() int { return len(h.pools) }

// NumElements returns the number of PEs in all pools.
func (h *Handlespace) NumElements() int { return h.elements }

// PoolLen returns the number of PEs in pool handle (0 if absent).
func (h *Handlespace) PoolLen(handle wire.PoolHandle) int {
	if p := h.pools[handle]; p != nil {
		return len(p.elements)
	}
	return 0
}

// PoolPolicyType returns the policy type of pool handle.
func (h *Handlespace) PoolPolicyType(handle wire.PoolHandle) (wire.PolicyType, bool) {
	if p := h.pools[handle]; p != nil {
		return p.policy, true
	}
	return 0, false
}

// Pools calls fn for every pool in ascending handle order until fn returns
// false. fn must not modify the handlespace.
func (h *Handlespace) Pools(fn func(handle wire.PoolHandle, policy wire.PolicyType) bool) {
	for _, handle := range slices.Sorted(maps.Keys(h.pools)) {
		if !fn(handle, h.pools[handle].policy) {
			return
		}
	}
}

// Elements calls fn for every PE of pool handle in ascending ID order until
// fn returns false. fn must not modify the handlespace.
func (h *Handlespace) Elements(handle wire.PoolHandle, fn func(*Element) bool) {
	p := h.pools[handle]
	if p == nil {
		return
	}
	es := slices.SortedFunc(maps.Values(p.elements), func(a, b *Element) int { return cmp.Compare(a.ID, b.ID) })
	for _, e := range es {
		if !fn(e) {
			return
		}
	}
}

// OwnedBy calls fn for every PE whose home is owner until fn returns false,
// in no particular order; O(k) for k such PEs. fn must not modify the
// handlespace (collect first, then change).
func (h *Handlespace) OwnedBy(owner uint32, fn func(*Element) bool) {
	o := h.owners[owner]
	if o == nil {
		return
	}
	for _, e := range o.elems {
		if !fn(e) {
			return
		}
	}
}
