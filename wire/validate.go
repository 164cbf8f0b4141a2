package wire

import "strconv"

// MaxConfigPoolHandleLen is the longest pool handle the clients of this
// project (pe-agent, proxy) accept in their configuration: far above any
// registrar's limit, which decides (RSPLIB's and our registrar's default
// is MaxPoolHandleLen; ours is limits.max_handle_length).
const MaxConfigPoolHandleLen = 1024

// MaxPoolHandleLen is the longest pool handle accepted by Validate helpers;
// RSPLIB's registrar aborts on longer ones (MAX_POOLHANDLESIZE).
const MaxPoolHandleLen = 32

// ValidationError is a semantic problem in a decoded value. Cause is the
// cause code a registrar puts into the Operation Error it answers with.
type ValidationError struct {
	Cause  CauseCode
	Field  string // for example "PE Identifier"
	Reason string
}

func (e *ValidationError) Error() string {
	return "wire: invalid " + e.Field + ": " + e.Reason + " (cause " + hexN(uint64(e.Cause), 4) + " " + e.Cause.String() + ")"
}

// Unwrap makes errors.Is(err, ErrInvalidValue) true for validation errors.
func (e *ValidationError) Unwrap() error { return ErrInvalidValue }

func invalid(c CauseCode, field, reason string) *ValidationError {
	return &ValidationError{Cause: c, Field: field, Reason: reason}
}

// ValidatePoolHandle checks a handle's length (1 to MaxPoolHandleLen bytes).
func ValidatePoolHandle(h PoolHandle) error {
	if len(h) == 0 {
		return invalid(CauseInvalidValues, "Pool Handle", "empty")
	}
	if len(h) > MaxPoolHandleLen {
		return invalid(CauseInvalidValues, "Pool Handle", strconv.Itoa(len(h))+" bytes, more than "+strconv.Itoa(MaxPoolHandleLen))
	}
	return nil
}

// Validate checks the semantic rules a registrar applies to a transport:
// a known type, port ≠ 0, valid addresses and the right number of them.
func (t *Transport) Validate() error {
	switch t.Type {
	case TransportSCTP:
		if len(t.Addrs) == 0 {
			return invalid(CauseInvalidValues, "SCTP Transport", "no address")
		}
	case TransportTCP, TransportUDP, TransportUDPLite, TransportDCCP:
		if len(t.Addrs) != 1 {
			return invalid(CauseInvalidValues, t.Type.String()+" Transport", strconv.Itoa(len(t.Addrs))+" addresses, want 1")
		}
	default:
		return invalid(CauseInvalidValues, "Transport", "unsupported type "+t.Type.String())
	}
	if t.Port == 0 {
		return invalid(CauseInvalidValues, t.Type.String()+" Transport", "port 0")
	}
	for _, a := range t.Addrs {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			return invalid(CauseInvalidValues, t.Type.String()+" Transport", "address "+a.String())
		}
	}
	return nil
}

// Validate checks the semantic rules for a Pool Element in a registration:
// PE ID ≠ 0, a valid User Transport, a policy this package can encode, and
// a valid ASAP Transport if present. An unknown policy yields cause 0x100b
// (RSPLIB's "unsupported pool policy", which RSPLIB peers understand).
func (p *PoolElement) Validate() error {
	if p.ID == 0 {
		return invalid(CauseInvalidValues, "PE Identifier", "zero")
	}
	if err := p.User.Validate(); err != nil {
		return err
	}
	if !p.Policy.Type.Known() {
		return invalid(CauseRSPLIBUnsupportedPolicy, "Policy", "unknown type "+hexN(uint64(p.Policy.Type), 8))
	}
	if p.ASAP.Type != 0 {
		if err := p.ASAP.Validate(); err != nil {
			return err
		}
	}
	return nil
}
