package wire

// Code in this file is a placeholder for the API; each function is replaced by its implementation.

import "errors"

// ParseError reports why and where a message could not be decoded.
type ParseError struct {
	Offset int    // byte offset from the start of the message
	Type   uint16 // message type (offset 0) or parameter type being decoded, 0 if unknown
	Err    error  // one of the Err* sentinels, usable with errors.Is
}

func (e *ParseError) Error() string { return "wire: " + e.Err.Error() }
func (e *ParseError) Unwrap() error { return e.Err }

// Sentinel errors carried by ParseError.Err.
var (
	ErrTruncated           = errors.New("truncated")
	ErrLength              = errors.New("bad length field")
	ErrPadding             = errors.New("bad padding")
	ErrUnknownMessage      = errors.New("unknown message type")
	ErrUnknownParameter    = errors.New("unrecognized parameter")
	ErrUnexpectedParameter = errors.New("unexpected parameter")
	ErrMissingParameter    = errors.New("missing parameter")
	ErrInvalidValue        = errors.New("invalid value")
)

// Parse decodes one message of protocol p. The returned message does not alias b.
func Parse(p Protocol, b []byte) (Message, error) { panic("unimplemented") }

// ParseASAP decodes one ASAP message.
func ParseASAP(b []byte) (Message, error) { return Parse(ASAP, b) }

// ParseENRP decodes one ENRP message.
func ParseENRP(b []byte) (Message, error)                                 { return Parse(ENRP, b) }
func (*Registration) Protocol() Protocol                                  { return ASAP }
func (*Registration) Type() uint8                                         { return TypeRegistration }
func (m *Registration) AppendBinary(b []byte) ([]byte, error)             { panic("unimplemented") }
func (*Deregistration) Protocol() Protocol                                { return ASAP }
func (*Deregistration) Type() uint8                                       { return TypeDeregistration }
func (m *Deregistration) AppendBinary(b []byte) ([]byte, error)           { panic("unimplemented") }
func (*RegistrationResponse) Protocol() Protocol                          { return ASAP }
func (*RegistrationResponse) Type() uint8                                 { return TypeRegistrationResponse }
func (m *RegistrationResponse) AppendBinary(b []byte) ([]byte, error)     { panic("unimplemented") }
func (*DeregistrationResponse) Protocol() Protocol                        { return ASAP }
func (*DeregistrationResponse) Type() uint8                               { return TypeDeregistrationResponse }
func (m *DeregistrationResponse) AppendBinary(b []byte) ([]byte, error)   { panic("unimplemented") }
func (*HandleResolution) Protocol() Protocol                              { return ASAP }
func (*HandleResolution) Type() uint8                                     { return TypeHandleResolution }
func (m *HandleResolution) AppendBinary(b []byte) ([]byte, error)         { panic("unimplemented") }
func (*HandleResolutionResponse) Protocol() Protocol                      { return ASAP }
func (*HandleResolutionResponse) Type() uint8                             { return TypeHandleResolutionResponse }
func (m *HandleResolutionResponse) AppendBinary(b []byte) ([]byte, error) { panic("unimplemented") }
func (*EndpointKeepAlive) Protocol() Protocol                             { return ASAP }
func (*EndpointKeepAlive) Type() uint8                                    { return TypeEndpointKeepAlive }
func (m *EndpointKeepAlive) AppendBinary(b []byte) ([]byte, error)        { panic("unimplemented") }
func (*EndpointKeepAliveAck) Protocol() Protocol                          { return ASAP }
func (*EndpointKeepAliveAck) Type() uint8                                 { return TypeEndpointKeepAliveAck }
func (m *EndpointKeepAliveAck) AppendBinary(b []byte) ([]byte, error)     { panic("unimplemented") }
func (*EndpointUnreachable) Protocol() Protocol                           { return ASAP }
func (*EndpointUnreachable) Type() uint8                                  { return TypeEndpointUnreachable }
func (m *EndpointUnreachable) AppendBinary(b []byte) ([]byte, error)      { panic("unimplemented") }
func (*ServerAnnounce) Protocol() Protocol                                { return ASAP }
func (*ServerAnnounce) Type() uint8                                       { return TypeServerAnnounce }
func (m *ServerAnnounce) AppendBinary(b []byte) ([]byte, error)           { panic("unimplemented") }
func (*Cookie) Protocol() Protocol                                        { return ASAP }
func (*Cookie) Type() uint8                                               { return TypeCookie }
func (m *Cookie) AppendBinary(b []byte) ([]byte, error)                   { panic("unimplemented") }
func (*CookieEcho) Protocol() Protocol                                    { return ASAP }
func (*CookieEcho) Type() uint8                                           { return TypeCookieEcho }
func (m *CookieEcho) AppendBinary(b []byte) ([]byte, error)               { panic("unimplemented") }
func (*BusinessCard) Protocol() Protocol                                  { return ASAP }
func (*BusinessCard) Type() uint8                                         { return TypeBusinessCard }
func (m *BusinessCard) AppendBinary(b []byte) ([]byte, error)             { panic("unimplemented") }
func (*ASAPError) Protocol() Protocol                                     { return ASAP }
func (*ASAPError) Type() uint8                                            { return TypeASAPError }
func (m *ASAPError) AppendBinary(b []byte) ([]byte, error)                { panic("unimplemented") }
func (*Presence) Protocol() Protocol                                      { return ENRP }
func (*Presence) Type() uint8                                             { return TypePresence }
func (m *Presence) AppendBinary(b []byte) ([]byte, error)                 { panic("unimplemented") }
func (*HandleTableRequest) Protocol() Protocol                            { return ENRP }
func (*HandleTableRequest) Type() uint8                                   { return TypeHandleTableRequest }
func (m *HandleTableRequest) AppendBinary(b []byte) ([]byte, error)       { panic("unimplemented") }
func (*HandleTableResponse) Protocol() Protocol                           { return ENRP }
func (*HandleTableResponse) Type() uint8                                  { return TypeHandleTableResponse }
func (m *HandleTableResponse) AppendBinary(b []byte) ([]byte, error)      { panic("unimplemented") }
func (*HandleUpdate) Protocol() Protocol                                  { return ENRP }
func (*HandleUpdate) Type() uint8                                         { return TypeHandleUpdate }
func (m *HandleUpdate) AppendBinary(b []byte) ([]byte, error)             { panic("unimplemented") }
func (*ListRequest) Protocol() Protocol                                   { return ENRP }
func (*ListRequest) Type() uint8                                          { return TypeListRequest }
func (m *ListRequest) AppendBinary(b []byte) ([]byte, error)              { panic("unimplemented") }
func (*ListResponse) Protocol() Protocol                                  { return ENRP }
func (*ListResponse) Type() uint8                                         { return TypeListResponse }
func (m *ListResponse) AppendBinary(b []byte) ([]byte, error)             { panic("unimplemented") }
func (*InitTakeover) Protocol() Protocol                                  { return ENRP }
func (*InitTakeover) Type() uint8                                         { return TypeInitTakeover }
func (m *InitTakeover) AppendBinary(b []byte) ([]byte, error)             { panic("unimplemented") }
func (*InitTakeoverAck) Protocol() Protocol                               { return ENRP }
func (*InitTakeoverAck) Type() uint8                                      { return TypeInitTakeoverAck }
func (m *InitTakeoverAck) AppendBinary(b []byte) ([]byte, error)          { panic("unimplemented") }
func (*TakeoverServer) Protocol() Protocol                                { return ENRP }
func (*TakeoverServer) Type() uint8                                       { return TypeTakeoverServer }
func (m *TakeoverServer) AppendBinary(b []byte) ([]byte, error)           { panic("unimplemented") }
func (*ENRPError) Protocol() Protocol                                     { return ENRP }
func (*ENRPError) Type() uint8                                            { return TypeENRPError }
func (m *ENRPError) AppendBinary(b []byte) ([]byte, error)                { panic("unimplemented") }

// ChecksumSum is the un-complemented one's-complement accumulator of the RFC
// 5353 §3.6.2 PE checksum, kept per owner and updated incrementally.
type ChecksumSum uint32

// PEChecksumPart returns the contribution of one PE (handle zero-padded, then its ID).
func PEChecksumPart(handle PoolHandle, id uint32) ChecksumSum { panic("unimplemented") }

// Add returns s plus the part p (one's-complement addition).
func (s ChecksumSum) Add(p ChecksumSum) ChecksumSum { panic("unimplemented") }

// Sub returns s minus the part p (one's-complement subtraction).
func (s ChecksumSum) Sub(p ChecksumSum) ChecksumSum { panic("unimplemented") }

// Checksum folds and complements s into the 16-bit value sent in ENRP_PRESENCE (0xffff for none).
func (s ChecksumSum) Checksum() uint16 { panic("unimplemented") }
