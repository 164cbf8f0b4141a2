package asap

import (
	"fmt"

	"github.com/rserpool/rserpool/wire"
)

// ConnID names an ASAP connection to the core. The caller picks it; it
// must not be reused after Closed.
type ConnID uint64

// Kind says what an Output is. The first four ask the caller to act; the
// others report what happened, for metrics and logs.
type Kind uint8

const (
	// Send: transmit Data (the encoding of Msg) on connection Conn.
	Send Kind = iota + 1
	// Close: close connection Conn (an association set up to a PE that is
	// no longer needed). The caller reports the end with Closed as usual.
	Close
	// Change: a PE this registrar owns was added or updated (Action
	// wire.ActionAddPE) or removed (wire.ActionDelPE); Element is a copy.
	// ENRP announces it to peers as ENRP_HANDLE_UPDATE (RFC 5353 §3.3).
	Change
	// Reach: open an ASAP association to Addr ("sctp://h:p") for PE
	// (Handle, PEID), which has no connection here, and report the outcome
	// with Dialed (RSPLIB's takeover behaviour, see Core.Adopt).
	Reach

	// Registered: PE (Handle, PEID) registered over Conn; Created says it
	// is new, PoolCreated that its pool is, Element is what was stored.
	Registered
	// Rejected: a registration of (Handle, PEID) over Conn was refused with
	// Cause; Result and Limit are its metric labels, Detail the reason.
	Rejected
	// Deregistered: a deregistration of (Handle, PEID) over Conn was
	// answered; N is 1 when the PE existed (and was removed), else 0.
	Deregistered
	// DeregistrationRefused: (Handle, PEID) belongs to another live
	// connection, so Conn may not deregister it (cause 0xa).
	DeregistrationRefused
	// Resolved: a handle resolution over Conn was answered with N PEs
	// (N = 0: unknown pool, cause 0x9).
	Resolved
	// KeepAliveAcked: an ASAP_ENDPOINT_KEEP_ALIVE_ACK arrived.
	KeepAliveAcked
	// UnreachableReported: an ASAP_ENDPOINT_UNREACHABLE for (Handle, PEID)
	// arrived; N is the PE's report count (0: unknown PE).
	UnreachableReported
	// Removed: PE (Handle, PEID) left the handlespace for Reason;
	// PoolGone says its pool went with it; N is the unreachable count.
	Removed
	// Reclaimed: a peer claimed PE (Handle, PEID), which is still
	// registered over a live connection here, so it was reclaimed.
	Reclaimed
	// EncodeFailed: a message to send on Conn did not encode (Detail).
	EncodeFailed
)

var kindNames = [...]string{
	Send: "send", Close: "close", Change: "change", Reach: "reach",
	Registered: "registered", Rejected: "rejected", Deregistered: "deregistered",
	DeregistrationRefused: "deregistration-refused", Resolved: "resolved",
	KeepAliveAcked: "keepalive-acked", UnreachableReported: "unreachable-reported",
	Removed: "removed", Reclaimed: "reclaimed", EncodeFailed: "encode-failed",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Output is one thing the caller must do or may count after a call into the
// Core. Which fields are set depends on Kind. Messages and Elements may
// share slices with the handlespace: use them before it changes again.
type Output struct {
	Kind    Kind
	Conn    ConnID            // Send, Close, Registered, Rejected, Deregistered, DeregistrationRefused, Resolved, EncodeFailed
	Msg     wire.Message      // Send
	Data    []byte            // Send: Msg encoded
	Action  wire.UpdateAction // Change
	Handle  wire.PoolHandle   // the PE's or request's pool handle
	PEID    uint32            // the PE's identifier
	Element wire.PoolElement  // Change, Registered
	Addr    string            // Reach
	Result  Result            // Registered, Rejected
	Limit   Limit             // Rejected, DeregistrationRefused: the limit label, LimitNone if none
	Reason  Reason            // Removed
	Cause   wire.CauseCode    // Rejected
	Detail  string            // Rejected, EncodeFailed: text; never holds a raw pool handle
	N       int               // Deregistered, Resolved, UnreachableReported, Removed
	Created bool              // Registered
	// PoolCreated (Registered) and PoolGone (Removed) say that the PE's
	// pool appeared or vanished with it.
	PoolCreated, PoolGone bool
}

// Result is the result label of a registration
// (rserpool_registrar_registrations_total).
type Result uint8

const (
	ResultOK Result = iota
	ResultInvalid
	ResultInconsistent
	ResultUnauthorized
	ResultLimit
)

// Results lists every Result, for pre-declaring label values.
var Results = []Result{ResultOK, ResultInvalid, ResultInconsistent, ResultUnauthorized, ResultLimit}

func (r Result) String() string {
	switch r {
	case ResultOK:
		return "ok"
	case ResultInvalid:
		return "invalid"
	case ResultInconsistent:
		return "inconsistent"
	case ResultUnauthorized:
		return "unauthorized"
	case ResultLimit:
		return "limit"
	}
	return "unknown"
}

// Limit is the limit label of a refusal
// (rserpool_registrar_limit_rejections_total) that the core decides.
type Limit uint8

const (
	LimitNone Limit = iota
	LimitPools
	LimitElements
	LimitPoolElements
	LimitHandleLength
	LimitAuthorization
	LimitSourceElements
)

func (l Limit) String() string {
	switch l {
	case LimitPools:
		return "pools"
	case LimitElements:
		return "elements"
	case LimitPoolElements:
		return "pool_elements"
	case LimitHandleLength:
		return "handle_length"
	case LimitAuthorization:
		return "authorization"
	case LimitSourceElements:
		return "source_elements"
	}
	return "none"
}

// Reason is why a PE was removed (rserpool_registrar_removals_total).
type Reason uint8

const (
	ReasonDeregistration Reason = iota
	ReasonKeepAlive
	ReasonUnreachable
	ReasonConnection
	ReasonExpiry
)

// Reasons lists every Reason, for pre-declaring label values.
var Reasons = []Reason{ReasonDeregistration, ReasonKeepAlive, ReasonUnreachable, ReasonConnection, ReasonExpiry}

func (r Reason) String() string {
	switch r {
	case ReasonDeregistration:
		return "deregistration"
	case ReasonKeepAlive:
		return "keepalive_timeout"
	case ReasonUnreachable:
		return "unreachable"
	case ReasonConnection:
		return "connection_lost"
	case ReasonExpiry:
		return "expiry"
	}
	return "unknown"
}
