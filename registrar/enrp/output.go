package enrp

import (
	"fmt"

	"github.com/rserpool/rserpool/wire"
)

// Kind says what an Output asks the caller to do.
type Kind uint8

const (
	// Send: transmit Msg to To (a peer's transport address, or the source
	// address a request came from), or to the ENRP multicast channel when
	// Multicast is set. ToID is the receiver's server ID (0 = unknown).
	Send Kind = iota + 1
	// Ready: the start-up synchronisation is over; start serving ASAP.
	Ready
	// KeepAliveHome: this registrar took over PE (Handle, PEID); send it an
	// ASAP_ENDPOINT_KEEP_ALIVE with H=1 and start monitoring it.
	KeepAliveHome
	// OwnershipLost: a peer now states it is the home of PE (Handle, PEID)
	// that this registrar owned; stop monitoring it. FromTable says the
	// statement came in a Handle Table Response (a peer's view, see
	// applyPE), not in a Handle Update (the PE registered there).
	OwnershipLost
	// PeerUp: peer PeerID (address To) was heard for the first time.
	PeerUp
	// PeerDown: peer PeerID (address To) is dead or was taken over and has
	// left the peer list.
	PeerDown
)

func (k Kind) String() string {
	switch k {
	case Send:
		return "send"
	case Ready:
		return "ready"
	case KeepAliveHome:
		return "keepalive-home"
	case OwnershipLost:
		return "ownership-lost"
	case PeerUp:
		return "peer-up"
	case PeerDown:
		return "peer-down"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Output is one thing the caller must do after Step, Tick, LocalChange or
// PeerConnLost. Which fields are set depends on Kind.
type Output struct {
	Kind      Kind
	To        string // Send: destination address; PeerUp/PeerDown: the peer's address
	ToID      uint32 // Send: receiver server ID, 0 if unknown
	Multicast bool   // Send: to the ENRP multicast channel instead of To
	Msg       wire.Message
	Handle    wire.PoolHandle // KeepAliveHome, OwnershipLost
	PEID      uint32          // KeepAliveHome, OwnershipLost
	PeerID    uint32          // PeerUp, PeerDown
	FromTable bool            // OwnershipLost
}

// Source tells where a received message came from.
type Source struct {
	// Addr is the address replies to a request can be sent to: the
	// transport address of the connection the message arrived over, or for
	// multicast the datagram's source. Outputs answering a request (List
	// Response, Handle Table Response) go to this address verbatim.
	Addr string
	// Multicast is set for messages from the ENRP multicast channel.
	Multicast bool
}
