package wire

import "net/netip"

// Protocol tells which message table applies. ASAP and ENRP number their
// messages from 0x01 both; only the SCTP PPID (or the socket) tells them apart.
type Protocol uint8

const (
	ASAP Protocol = 1 // RFC 5352, SCTP PPID 11
	ENRP Protocol = 2 // RFC 5353, SCTP PPID 12
)

// Payload Protocol Identifiers (RFC 5352 §8, RFC 5353 §7), used on SCTP and in
// the DATA chunks of the TCP mapping.
const (
	PPIDASAP uint32 = 11
	PPIDENRP uint32 = 12
)

// Well-known ports (IANA). ENRP over the TCP mapping on 9901 and TLS on 9902
// is this project's documented extension.
const (
	PortASAP    = 3863
	PortASAPTLS = 3864
	PortENRP    = 9901
	PortENRPTLS = 9902
)

// Message is implemented by every ASAP and ENRP message type.
//
// AppendBinary appends the RFC 5354 encoding (lengths exclude the final
// padding, the message itself is padded to a multiple of 4) to b and returns
// the extended slice; it allocates only if b lacks capacity.
type Message interface {
	Protocol() Protocol
	Type() uint8
	AppendBinary(b []byte) ([]byte, error)
}

// TransportType is the parameter type of a transport parameter.
type TransportType uint16

// Transport parameter types (RFC 5354 §3.3-3.7, §3.16).
const (
	TransportDCCP    TransportType = 0x0003
	TransportSCTP    TransportType = 0x0004
	TransportTCP     TransportType = 0x0005
	TransportUDP     TransportType = 0x0006
	TransportUDPLite TransportType = 0x0007
	TransportOpaque  TransportType = 0x0010
)

// TransportUse is the SCTP Transport Use field (RFC 5354 §3.4); RSPLIB and
// Wireshark read the TCP Transport's second field the same way.
type TransportUse uint16

const (
	UseData           TransportUse = 0x0000
	UseDataAndControl TransportUse = 0x0001
)

// Transport is one transport parameter: SCTP (one or more addresses), TCP, UDP,
// UDP-Lite, DCCP (exactly one address) or Opaque (no port, no address).
// The zero value (Type 0) means "absent" where a transport is optional.
type Transport struct {
	Type        TransportType
	Port        uint16
	Use         TransportUse // SCTP, TCP (reserved in the RFC, Transport Use in RSPLIB); 0 elsewhere
	ServiceCode uint32       // DCCP only
	Addrs       []netip.Addr // IPv4 addresses are sent as IPv4 Address parameters, others as IPv6
	Opaque      []byte       // Opaque Transport only
}

// PolicyType is a pool member selection policy (RFC 5356 §7.1 number space).
type PolicyType uint32

// Policy types: RFC 5356 and the RSPLIB extensions (policies.md).
const (
	PolicyRoundRobin                  PolicyType = 0x00000001
	PolicyWeightedRoundRobin          PolicyType = 0x00000002
	PolicyRandom                      PolicyType = 0x00000003
	PolicyWeightedRandom              PolicyType = 0x00000004
	PolicyPriority                    PolicyType = 0x00000005
	PolicyLeastUsed                   PolicyType = 0x40000001
	PolicyLeastUsedDegradation        PolicyType = 0x40000002
	PolicyPriorityLeastUsed           PolicyType = 0x40000003
	PolicyRandomizedLeastUsed         PolicyType = 0x40000004
	PolicyRandomizedPriorityLeastUsed PolicyType = 0xb0001001 // RSPLIB
	PolicyRandomizedLeastUsedDegr     PolicyType = 0xb0001002 // RSPLIB
	PolicyPriorityLeastUsedDegr       PolicyType = 0xb0001003 // RSPLIB
	PolicyRandomizedPriorityLUDegr    PolicyType = 0xb0001004 // RSPLIB
	PolicyWeightedRandomDPF           PolicyType = 0xb0002001 // RSPLIB
	PolicyLeastUsedDPF                PolicyType = 0xb0002002 // RSPLIB
	PolicyLeastUsedDegradationDPF     PolicyType = 0xb0002003 // RSPLIB
	PolicyPriorityLeastUsedDPF        PolicyType = 0xb0002004 // RSPLIB engine only, no wire encoding
	PolicyPriorityLeastUsedDegrDPF    PolicyType = 0xb0002005 // RSPLIB engine only, no wire encoding
)

// Policy is a Pool Member Selection Policy parameter (RFC 5354 §3.8). Which
// value fields are on the wire follows from Type (wire-format.md §3.8); the
// others are zero. A Type this package does not know keeps its u32 values in
// Raw so that it round-trips and a registrar can reject it with the right cause.
type Policy struct {
	Type            PolicyType
	Weight          uint32
	Priority        uint32
	Load            uint32
	LoadDegradation uint32
	LoadDPF         uint32
	WeightDPF       uint32
	Distance        uint32 // milliseconds
	Raw             []uint32
}

// PoolElement is a Pool Element parameter (RFC 5354 §3.10).
type PoolElement struct {
	ID               uint32
	HomeServer       uint32 // Home ENRP Server Identifier; 0 = undetermined
	RegistrationLife uint32 // RFC: seconds, 0xffffffff infinite; RSPLIB: milliseconds
	User             Transport
	Policy           Policy
	ASAP             Transport // optional ASAP Transport (SCTP); Type 0 = absent
}

// ServerInfo is a Server Information parameter (RFC 5354 §3.11).
type ServerInfo struct {
	ServerID  uint32
	Transport Transport // SCTP (or, in our TCP extension, TCP) with the PR's ENRP addresses
}

// CauseCode is an Operation Error cause code (RFC 5354 §3.12), including
// RSPLIB's private codes.
type CauseCode uint16

const (
	CauseUnspecified              CauseCode = 0x0000
	CauseUnrecognizedParameter    CauseCode = 0x0001
	CauseUnrecognizedMessage      CauseCode = 0x0002
	CauseInvalidValues            CauseCode = 0x0003
	CauseNonUniquePEIdentifier    CauseCode = 0x0004
	CauseInconsistentPolicy       CauseCode = 0x0005
	CauseLackOfResources          CauseCode = 0x0006
	CauseInconsistentTransport    CauseCode = 0x0007
	CauseInconsistentDataControl  CauseCode = 0x0008
	CauseUnknownPoolHandle        CauseCode = 0x0009
	CauseRejectedSecurity         CauseCode = 0x000a
	CauseRSPLIBInvalidMessage     CauseCode = 0x0010
	CauseRSPLIBInvalidValue       CauseCode = 0x0011
	CauseRSPLIBWrongProtocol      CauseCode = 0x100a
	CauseRSPLIBUnsupportedPolicy  CauseCode = 0x100b
	CauseRSPLIBInvalidID          CauseCode = 0xf000
	CauseRSPLIBDuplicateID        CauseCode = 0xf002
	CauseRSPLIBInvalidPolicy      CauseCode = 0xf003
	CauseRSPLIBInvalidPoolHandle  CauseCode = 0xf004
	CauseRSPLIBInvalidAddresses   CauseCode = 0xf005
	CauseRSPLIBInvalidRegistrator CauseCode = 0xf006
	CauseRSPLIBNoASAPAddresses    CauseCode = 0xf007
	CauseRSPLIBNoUserAddresses    CauseCode = 0xf008
)

// ErrorCause is one cause of an Operation Error. Info is the cause-specific
// information (for example the offending TLV), without padding.
type ErrorCause struct {
	Code CauseCode
	Info []byte
}

// OperationError is an Operation Error parameter: one or more causes.
type OperationError struct {
	Causes []ErrorCause
}

// RawParam is a parameter this package does not know, kept whole (header,
// value, no padding) so that a handler can report it in an
// "Unrecognized Parameter" cause.
type RawParam struct {
	Type uint16
	TLV  []byte
}

// Unrecognized lists the unknown parameters that a decoder skipped and whose
// action bits (0xc000 = 11) ask for a report. Every message embeds it.
type Unrecognized struct {
	Unrecognized []RawParam
}

// UpdateAction is the ENRP Handle Update action (RFC 5353 §2.4).
type UpdateAction uint16

const (
	ActionAddPE UpdateAction = 0x0000
	ActionDelPE UpdateAction = 0x0001
)

// ASAP message types (RFC 5352 §2.2).
const (
	TypeRegistration             uint8 = 0x01
	TypeDeregistration           uint8 = 0x02
	TypeRegistrationResponse     uint8 = 0x03
	TypeDeregistrationResponse   uint8 = 0x04
	TypeHandleResolution         uint8 = 0x05
	TypeHandleResolutionResponse uint8 = 0x06
	TypeEndpointKeepAlive        uint8 = 0x07
	TypeEndpointKeepAliveAck     uint8 = 0x08
	TypeEndpointUnreachable      uint8 = 0x09
	TypeServerAnnounce           uint8 = 0x0a
	TypeCookie                   uint8 = 0x0b
	TypeCookieEcho               uint8 = 0x0c
	TypeBusinessCard             uint8 = 0x0d
	TypeASAPError                uint8 = 0x0e
)

// ENRP message types (RFC 5353 §2).
const (
	TypePresence            uint8 = 0x01
	TypeHandleTableRequest  uint8 = 0x02
	TypeHandleTableResponse uint8 = 0x03
	TypeHandleUpdate        uint8 = 0x04
	TypeListRequest         uint8 = 0x05
	TypeListResponse        uint8 = 0x06
	TypeInitTakeover        uint8 = 0x07
	TypeInitTakeoverAck     uint8 = 0x08
	TypeTakeoverServer      uint8 = 0x09
	TypeENRPError           uint8 = 0x0a
)

// ---- ASAP messages (RFC 5352 §2.2) ----

// Registration is ASAP_REGISTRATION (0x01): PE → PR.
type Registration struct {
	PoolHandle PoolHandle
	Element    PoolElement
	Unrecognized
}

// Deregistration is ASAP_DEREGISTRATION (0x02): PE → PR.
type Deregistration struct {
	PoolHandle PoolHandle
	ID         uint32
	Unrecognized
}

// RegistrationResponse is ASAP_REGISTRATION_RESPONSE (0x03), flag R = 0x01.
type RegistrationResponse struct {
	Reject     bool
	PoolHandle PoolHandle
	ID         uint32
	Error      *OperationError // optional
	Unrecognized
}

// DeregistrationResponse is ASAP_DEREGISTRATION_RESPONSE (0x04).
type DeregistrationResponse struct {
	PoolHandle PoolHandle
	ID         uint32
	Error      *OperationError // optional; presence = rejection
	Unrecognized
}

// HandleResolution is ASAP_HANDLE_RESOLUTION (0x05), flag S = 0x01.
// Items carries RSPLIB's Handle Resolution Option (0x803f) when HasItems.
type HandleResolution struct {
	Subscribe  bool
	PoolHandle PoolHandle
	HasItems   bool
	Items      uint32 // 0xffffffff = as many as possible
	Unrecognized
}

// HandleResolutionResponse is ASAP_HANDLE_RESOLUTION_RESPONSE (0x06), flag
// A = 0x01. Positive: Policy (always sent by us) and Elements. Negative: Error.
type HandleResolutionResponse struct {
	Accept     bool
	PoolHandle PoolHandle
	Policy     *Policy
	Elements   []PoolElement
	Error      *OperationError
	Unrecognized
}

// EndpointKeepAlive is ASAP_ENDPOINT_KEEP_ALIVE (0x07), flag H = 0x01.
// RSPLIB appends a PE Identifier (HasID).
type EndpointKeepAlive struct {
	Home       bool
	ServerID   uint32
	PoolHandle PoolHandle
	HasID      bool
	ID         uint32
	Unrecognized
}

// EndpointKeepAliveAck is ASAP_ENDPOINT_KEEP_ALIVE_ACK (0x08).
type EndpointKeepAliveAck struct {
	PoolHandle PoolHandle
	ID         uint32
	Unrecognized
}

// EndpointUnreachable is ASAP_ENDPOINT_UNREACHABLE (0x09).
type EndpointUnreachable struct {
	PoolHandle PoolHandle
	ID         uint32
	Unrecognized
}

// ServerAnnounce is ASAP_SERVER_ANNOUNCE (0x0a), sent by UDP multicast.
type ServerAnnounce struct {
	ServerID   uint32
	Transports []Transport
	Unrecognized
}

// Cookie is ASAP_COOKIE (0x0b).
type Cookie struct {
	Cookie []byte
	Unrecognized
}

// CookieEcho is ASAP_COOKIE_ECHO (0x0c).
type CookieEcho struct {
	Cookie []byte
	Unrecognized
}

// BusinessCard is ASAP_BUSINESS_CARD (0x0d). Policy is RSPLIB's extra
// parameter after the Pool Handle (accepted on decode, sent only if set).
type BusinessCard struct {
	PoolHandle PoolHandle
	Policy     *Policy
	Elements   []PoolElement
	Unrecognized
}

// ASAPError is ASAP_ERROR (0x0e).
type ASAPError struct {
	Error OperationError
	Unrecognized
}

// ---- ENRP messages (RFC 5353 §2) ----

// Presence is ENRP_PRESENCE (0x01), flag R = 0x01 (reply required).
type Presence struct {
	ReplyRequired bool
	Sender        uint32
	Receiver      uint32
	Checksum      uint16
	Info          *ServerInfo // required by RSPLIB; we always send it
	Unrecognized
}

// HandleTableRequest is ENRP_HANDLE_TABLE_REQUEST (0x02), flag W = 0x01.
type HandleTableRequest struct {
	OwnChildrenOnly bool
	Sender          uint32
	Receiver        uint32
	Unrecognized
}

// PoolEntry is one pool of a Handle Table Response: a Pool Handle and its PEs.
type PoolEntry struct {
	PoolHandle PoolHandle
	Elements   []PoolElement
}

// HandleTableResponse is ENRP_HANDLE_TABLE_RESPONSE (0x03), flags R = 0x01,
// M = 0x02.
type HandleTableResponse struct {
	Reject   bool
	More     bool
	Sender   uint32
	Receiver uint32
	Pools    []PoolEntry
	Unrecognized
}

// HandleUpdate is ENRP_HANDLE_UPDATE (0x04); flag T = 0x01 (RSPLIB takeover
// suggestion).
type HandleUpdate struct {
	TakeoverSuggested bool
	Sender            uint32
	Receiver          uint32
	Action            UpdateAction
	PoolHandle        PoolHandle
	Element           PoolElement
	Unrecognized
}

// ListRequest is ENRP_LIST_REQUEST (0x05).
type ListRequest struct {
	Sender   uint32
	Receiver uint32
	Unrecognized
}

// ListResponse is ENRP_LIST_RESPONSE (0x06), flag R = 0x01.
type ListResponse struct {
	Reject   bool
	Sender   uint32
	Receiver uint32
	Servers  []ServerInfo
	Unrecognized
}

// InitTakeover is ENRP_INIT_TAKEOVER (0x07).
type InitTakeover struct {
	Sender, Receiver, Target uint32
	Unrecognized
}

// InitTakeoverAck is ENRP_INIT_TAKEOVER_ACK (0x08).
type InitTakeoverAck struct {
	Sender, Receiver, Target uint32
	Unrecognized
}

// TakeoverServer is ENRP_TAKEOVER_SERVER (0x09).
type TakeoverServer struct {
	Sender, Receiver, Target uint32
	Unrecognized
}

// ENRPError is ENRP_ERROR (0x0a). RSPLIB echoes the IDs of the offending
// message in Sender and Receiver.
type ENRPError struct {
	Sender   uint32
	Receiver uint32
	Error    OperationError
	Unrecognized
}
