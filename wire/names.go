package wire

import (
	"errors"
	"strconv"
)

// ParamType is a TLV parameter type (RFC 5354 §5, Table 1). The top two bits
// are the action bits for unknown types (0x0000 stop, 0x4000 stop and report,
// 0x8000 skip, 0xc000 skip and report).
type ParamType uint16

// Parameter types (wire-format.md §2.1).
const (
	ParamIPv4Address            ParamType = 0x0001 // §3.1: 4-byte address, Length 8
	ParamIPv6Address            ParamType = 0x0002 // §3.2: 16-byte address, Length 20
	ParamDCCPTransport          ParamType = 0x0003 // §3.3: port, reserved, service code, one address
	ParamSCTPTransport          ParamType = 0x0004 // §3.4: port, transport use, ≥1 address
	ParamTCPTransport           ParamType = 0x0005 // §3.5: port, transport use (RSPLIB), one address
	ParamUDPTransport           ParamType = 0x0006 // §3.6: port, reserved, one address
	ParamUDPLiteTransport       ParamType = 0x0007 // §3.7: port, reserved, one address
	ParamPolicy                 ParamType = 0x0008 // §3.8: policy type, u32 values
	ParamPoolHandle             ParamType = 0x0009 // §3.9: handle bytes
	ParamPoolElement            ParamType = 0x000a // §3.10: ID, home, life, user transport, policy, [ASAP transport]
	ParamServerInformation      ParamType = 0x000b // §3.11: server ID, SCTP transport
	ParamOperationError         ParamType = 0x000c // §3.12: error causes
	ParamCookie                 ParamType = 0x000d // §3.13: cookie bytes
	ParamPEIdentifier           ParamType = 0x000e // §3.14: u32, Length 8
	ParamPEChecksum             ParamType = 0x000f // §3.15: u16, Length 6
	ParamOpaqueTransport        ParamType = 0x0010 // §3.16: opaque bytes
	ParamHandleResolutionOption ParamType = 0x803f // RSPLIB §3.17: u32 items, Length 8
)

var paramNames = map[ParamType]string{
	ParamIPv4Address:            "IPv4 Address",
	ParamIPv6Address:            "IPv6 Address",
	ParamDCCPTransport:          "DCCP Transport",
	ParamSCTPTransport:          "SCTP Transport",
	ParamTCPTransport:           "TCP Transport",
	ParamUDPTransport:           "UDP Transport",
	ParamUDPLiteTransport:       "UDP-Lite Transport",
	ParamPolicy:                 "Pool Member Selection Policy",
	ParamPoolHandle:             "Pool Handle",
	ParamPoolElement:            "Pool Element",
	ParamServerInformation:      "Server Information",
	ParamOperationError:         "Operation Error",
	ParamCookie:                 "Cookie",
	ParamPEIdentifier:           "PE Identifier",
	ParamPEChecksum:             "PE Checksum",
	ParamOpaqueTransport:        "Opaque Transport",
	ParamHandleResolutionOption: "Handle Resolution Option",
	0x003f:                      "Handle Resolution Option",
}

func hexN(v uint64, digits int) string {
	s := strconv.FormatUint(v, 16)
	for len(s) < digits {
		s = "0" + s
	}
	return "0x" + s
}

func (t ParamType) String() string {
	if n, ok := paramNames[t]; ok {
		return n
	}
	return "Unknown parameter " + hexN(uint64(t), 4)
}

func (p Protocol) String() string {
	switch p {
	case ASAP:
		return "ASAP"
	case ENRP:
		return "ENRP"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

var asapNames = [...]string{
	TypeRegistration:             "ASAP_REGISTRATION",
	TypeDeregistration:           "ASAP_DEREGISTRATION",
	TypeRegistrationResponse:     "ASAP_REGISTRATION_RESPONSE",
	TypeDeregistrationResponse:   "ASAP_DEREGISTRATION_RESPONSE",
	TypeHandleResolution:         "ASAP_HANDLE_RESOLUTION",
	TypeHandleResolutionResponse: "ASAP_HANDLE_RESOLUTION_RESPONSE",
	TypeEndpointKeepAlive:        "ASAP_ENDPOINT_KEEP_ALIVE",
	TypeEndpointKeepAliveAck:     "ASAP_ENDPOINT_KEEP_ALIVE_ACK",
	TypeEndpointUnreachable:      "ASAP_ENDPOINT_UNREACHABLE",
	TypeServerAnnounce:           "ASAP_SERVER_ANNOUNCE",
	TypeCookie:                   "ASAP_COOKIE",
	TypeCookieEcho:               "ASAP_COOKIE_ECHO",
	TypeBusinessCard:             "ASAP_BUSINESS_CARD",
	TypeASAPError:                "ASAP_ERROR",
}

var enrpNames = [...]string{
	TypePresence:            "ENRP_PRESENCE",
	TypeHandleTableRequest:  "ENRP_HANDLE_TABLE_REQUEST",
	TypeHandleTableResponse: "ENRP_HANDLE_TABLE_RESPONSE",
	TypeHandleUpdate:        "ENRP_HANDLE_UPDATE",
	TypeListRequest:         "ENRP_LIST_REQUEST",
	TypeListResponse:        "ENRP_LIST_RESPONSE",
	TypeInitTakeover:        "ENRP_INIT_TAKEOVER",
	TypeInitTakeoverAck:     "ENRP_INIT_TAKEOVER_ACK",
	TypeTakeoverServer:      "ENRP_TAKEOVER_SERVER",
	TypeENRPError:           "ENRP_ERROR",
}

// MessageName returns the name of message type t of protocol p, for
// example "ASAP_REGISTRATION", or a numeric form for unknown types.
func (p Protocol) MessageName(t uint8) string {
	var names []string
	switch p {
	case ASAP:
		names = asapNames[:]
	case ENRP:
		names = enrpNames[:]
	}
	if int(t) < len(names) && names[t] != "" {
		return names[t]
	}
	return p.String() + "_UNKNOWN_" + hexN(uint64(t), 2)
}

// MessageName returns the name of m's type, for example "ENRP_PRESENCE".
func MessageName(m Message) string { return m.Protocol().MessageName(m.Type()) }

func (t TransportType) String() string {
	switch t {
	case 0:
		return "none"
	case TransportDCCP:
		return "DCCP"
	case TransportSCTP:
		return "SCTP"
	case TransportTCP:
		return "TCP"
	case TransportUDP:
		return "UDP"
	case TransportUDPLite:
		return "UDP-Lite"
	case TransportOpaque:
		return "Opaque"
	}
	return "TransportType(" + hexN(uint64(t), 4) + ")"
}

func (u TransportUse) String() string {
	switch u {
	case UseData:
		return "data only"
	case UseDataAndControl:
		return "data plus control"
	}
	return "TransportUse(" + hexN(uint64(u), 4) + ")"
}

func (a UpdateAction) String() string {
	switch a {
	case ActionAddPE:
		return "ADD_PE"
	case ActionDelPE:
		return "DEL_PE"
	}
	return "UpdateAction(" + hexN(uint64(a), 4) + ")"
}

var causeNames = map[CauseCode]string{
	CauseUnspecified:              "Unspecified Error",
	CauseUnrecognizedParameter:    "Unrecognized Parameter",
	CauseUnrecognizedMessage:      "Unrecognized Message",
	CauseInvalidValues:            "Invalid Values",
	CauseNonUniquePEIdentifier:    "Non-unique PE Identifier",
	CauseInconsistentPolicy:       "Inconsistent Pooling Policy",
	CauseLackOfResources:          "Lack of Resources",
	CauseInconsistentTransport:    "Inconsistent Transport Type",
	CauseInconsistentDataControl:  "Inconsistent Data/Control Configuration",
	CauseUnknownPoolHandle:        "Unknown Pool Handle",
	CauseRejectedSecurity:         "Rejected due to security considerations",
	CauseRSPLIBInvalidMessage:     "RSPLIB: invalid message",
	CauseRSPLIBInvalidValue:       "RSPLIB: invalid value",
	CauseRSPLIBWrongProtocol:      "RSPLIB: wrong protocol",
	CauseRSPLIBUnsupportedPolicy:  "RSPLIB: unsupported pool policy",
	CauseRSPLIBInvalidID:          "RSPLIB: invalid PE ID",
	CauseRSPLIBDuplicateID:        "RSPLIB: duplicate ID",
	CauseRSPLIBInvalidPolicy:      "RSPLIB: invalid pool policy settings",
	CauseRSPLIBInvalidPoolHandle:  "RSPLIB: invalid pool handle",
	CauseRSPLIBInvalidAddresses:   "RSPLIB: invalid addresses",
	CauseRSPLIBInvalidRegistrator: "RSPLIB: invalid registrator transport",
	CauseRSPLIBNoASAPAddresses:    "RSPLIB: no usable ASAP addresses",
	CauseRSPLIBNoUserAddresses:    "RSPLIB: no usable user-transport addresses",
}

func (c CauseCode) String() string {
	if n, ok := causeNames[c]; ok {
		return n
	}
	return "Cause " + hexN(uint64(c), 4)
}

// MarshalText encodes a policy type as its CLI/config name.
func (t PolicyType) MarshalText() ([]byte, error) { return []byte(t.Name()), nil }

// UnmarshalText accepts what ParsePolicyName accepts.
func (t *PolicyType) UnmarshalText(b []byte) error {
	v, err := ParsePolicyName(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// MarshalText encodes a transport type as its name ("SCTP", "TCP", ...).
func (t TransportType) MarshalText() ([]byte, error) {
	switch t {
	case 0, TransportDCCP, TransportSCTP, TransportTCP, TransportUDP, TransportUDPLite, TransportOpaque:
		return []byte(t.String()), nil
	}
	return []byte(hexN(uint64(t), 4)), nil
}

// UnmarshalText accepts a name written by MarshalText or a number.
func (t *TransportType) UnmarshalText(b []byte) error {
	s := string(b)
	for _, c := range []TransportType{0, TransportDCCP, TransportSCTP, TransportTCP, TransportUDP, TransportUDPLite, TransportOpaque} {
		if c.String() == s {
			*t = c
			return nil
		}
	}
	v, err := strconv.ParseUint(s, 0, 16)
	if err != nil {
		return errors.New("wire: unknown transport type " + strconv.Quote(s))
	}
	*t = TransportType(v)
	return nil
}
