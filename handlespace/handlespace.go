package handlespace

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rserpool/rserpool/policy"
	"github.com/rserpool/rserpool/wire"
)

// Element is one pool element of the handlespace. The embedded PoolElement
// holds what the registration carried (ID, HomeServer = owner, RegistrationLife,
// User transport, Policy, ASAP transport).
//
// Pointers returned by the Handlespace stay valid until the element is
// removed; its fields change in place on re-registration. Callers must not
// modify an Element; use the Handlespace methods.
type Element struct {
	Pool wire.PoolHandle
	wire.PoolElement
	Registered  time.Time // first registration
	Updated     time.Time // last (re-)registration or update from a peer
	Expiry      time.Time // zero = never expires
	Unreachable int       // ENDPOINT_UNREACHABLE reports received

	entry     policy.Entry // selection state in the pool's selector
	pool      *pool
	ownerPrev *Element // per-owner list
	ownerNext *Element
	heapIndex int32 // index in the expiry heap, -1 when not in it
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
	count int
	head  *Element
}

// New returns an empty Handlespace.
func New(opts Options) *Handlespace {
	panic("unimplemented")
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
// PE was new. The Element is owned by the Handlespace.
func (h *Handlespace) Register(handle wire.PoolHandle, pe wire.PoolElement, now time.Time) (e *Element, created bool, err error) {
	panic("unimplemented")
}

// Deregister removes PE id from pool handle and deletes the pool when it
// becomes empty. It returns a copy of the removed element.
func (h *Handlespace) Deregister(handle wire.PoolHandle, id uint32) (removed Element, ok bool) {
	panic("unimplemented")
}

// Get returns the element with the given pool handle and ID.
func (h *Handlespace) Get(handle wire.PoolHandle, id uint32) (*Element, bool) {
	panic("unimplemented")
}

// Resolve selects up to n distinct elements of pool handle by the pool's
// policy (policies.md), applies the policy's update step, appends them to dst
// and returns the extended slice. pool is the overall Policy parameter to
// send: the first selected PE's complete Policy, as RSPLIB does (only the
// pool's policy type when nothing was selected). ok is false when the pool
// does not exist.
func (h *Handlespace) Resolve(handle wire.PoolHandle, n int, dst []*Element) (pool wire.Policy, out []*Element, ok bool) {
	panic("unimplemented")
}

// ReportUnreachable counts one ENDPOINT_UNREACHABLE report for the PE and
// returns the new count. The caller decides whether to remove the PE.
func (h *Handlespace) ReportUnreachable(handle wire.PoolHandle, id uint32) (count int, ok bool) {
	panic("unimplemented")
}

// SetHome changes the owner (Home ENRP Server ID) of a PE, for example after
// a takeover, and moves it between the per-owner checksums. It reports
// whether the PE exists.
func (h *Handlespace) SetHome(handle wire.PoolHandle, id uint32, home uint32) bool {
	panic("unimplemented")
}

// SetExpiry sets the time at which the PE expires; the zero time means never.
// It reports whether the PE exists.
func (h *Handlespace) SetExpiry(handle wire.PoolHandle, id uint32, t time.Time) bool {
	panic("unimplemented")
}

// Expired appends to dst the elements whose Expiry is not after now, in
// ascending Expiry order (ties by pool handle, then ID), and returns the
// extended slice. It does not remove them. O(k log n) for k results.
func (h *Handlespace) Expired(now time.Time, dst []*Element) []*Element {
	panic("unimplemented")
}

// NextExpiry returns the earliest Expiry of all elements, for arming a timer.
func (h *Handlespace) NextExpiry() (time.Time, bool) {
	panic("unimplemented")
}

// Checksum returns the RFC 5353 §3.6.2 PE checksum over the PEs whose home is
// owner (0xffff when it owns none). It is maintained incrementally: O(1).
func (h *Handlespace) Checksum(owner uint32) uint16 {
	panic("unimplemented")
}

// Owners returns, in ascending order, the IDs of the servers owning at least
// one PE. The slice is the caller's.
func (h *Handlespace) Owners() []uint32 {
	panic("unimplemented")
}

// OwnedCount returns the number of PEs whose home is owner.
func (h *Handlespace) OwnedCount(owner uint32) int {
	panic("unimplemented")
}

// NumPools returns the number of pools.
func (h *Handlespace) NumPools() int { panic("unimplemented") }

// NumElements returns the number of PEs in all pools.
func (h *Handlespace) NumElements() int { panic("unimplemented") }

// PoolLen returns the number of PEs in pool handle (0 if absent).
func (h *Handlespace) PoolLen(handle wire.PoolHandle) int { panic("unimplemented") }

// PoolPolicyType returns the policy type of pool handle.
func (h *Handlespace) PoolPolicyType(handle wire.PoolHandle) (wire.PolicyType, bool) {
	panic("unimplemented")
}

// Pools calls fn for every pool in ascending handle order until fn returns
// false. fn must not modify the handlespace.
func (h *Handlespace) Pools(fn func(handle wire.PoolHandle, policy wire.PolicyType) bool) {
	panic("unimplemented")
}

// Elements calls fn for every PE of pool handle in ascending ID order until
// fn returns false. fn must not modify the handlespace.
func (h *Handlespace) Elements(handle wire.PoolHandle, fn func(*Element) bool) {
	panic("unimplemented")
}

// OwnedBy calls fn for every PE whose home is owner until fn returns false,
// in no particular order; O(k) for k such PEs. fn must not modify the
// handlespace (collect first, then change).
func (h *Handlespace) OwnedBy(owner uint32, fn func(*Element) bool) {
	panic("unimplemented")
}
