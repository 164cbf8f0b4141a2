package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrBadCookie: a cookie's signature does not verify under any key.
var ErrBadCookie = errors.New("session: cookie signature does not verify")

// MinKeySize is the shortest key a Signer accepts.
const MinKeySize = 16

// signerLabel separates these MACs from any other use of the same key.
const signerLabel = "rserpool session cookie v1\x00"

// Signer signs cookies with HMAC-SHA256 and verifies cookie echoes, as RFC
// 5352 §3.8 asks ("the cookie should be signed by the PE"): the pool user
// holds the cookie, so without a signature any pool user could hand a PE
// state of its own making. The PEs of a pool share the key (outside
// RSerPool). A signed cookie is the state followed by a 32-byte tag.
//
// A signature proves that some PE of the pool made the cookie, not that it
// is the latest one: a pool user can echo an older cookie of its own
// session. Put a sequence number or time into the state where that matters.
// A Signer is safe for concurrent use.
type Signer struct {
	keys [][]byte // keys[0] signs; every key verifies
}

// NewSigner returns a Signer that signs with key and verifies with key and
// any previous keys (for key rotation). Keys are at least MinKeySize bytes.
func NewSigner(key []byte, previous ...[]byte) (*Signer, error) {
	s := &Signer{}
	for i, k := range append([][]byte{key}, previous...) {
		if len(k) < MinKeySize {
			return nil, fmt.Errorf("session: signer key %d is %d bytes, want at least %d", i, len(k), MinKeySize)
		}
		s.keys = append(s.keys, append([]byte(nil), k...))
	}
	return s, nil
}

// Sign returns state followed by its tag, in a new slice.
func (s *Signer) Sign(state []byte) []byte {
	out := make([]byte, 0, len(state)+sha256.Size)
	out = append(out, state...)
	return tag(s.keys[0], out, state)
}

// Verify checks a signed cookie and returns its state (a sub-slice of
// cookie), or ErrBadCookie.
func (s *Signer) Verify(cookie []byte) ([]byte, error) {
	if len(cookie) < sha256.Size {
		return nil, ErrBadCookie
	}
	state, got := cookie[:len(cookie)-sha256.Size], cookie[len(cookie)-sha256.Size:]
	var buf [sha256.Size]byte
	for _, k := range s.keys {
		if hmac.Equal(tag(k, buf[:0], state), got) {
			return state, nil
		}
	}
	return nil, ErrBadCookie
}

// tag appends HMAC-SHA256(key, label || state) to b.
func tag(key, b, state []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signerLabel))
	m.Write(state)
	return m.Sum(b)
}
