package session_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/rserpool/rserpool/session"
)

func TestSigner(t *testing.T) {
	oldKey := bytes.Repeat([]byte{1}, 16)
	newKey := bytes.Repeat([]byte{2}, 32)
	old, err := session.NewSigner(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := session.NewSigner(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	state := []byte("<PP-TD1>\x00\x00\x00\x00\x00\x00\x00\x07")
	c := cur.Sign(state)
	if len(c) != len(state)+sha256.Size || !bytes.Equal(c[:len(state)], state) {
		t.Fatalf("cookie %x", c)
	}
	if got, err := cur.Verify(c); err != nil || !bytes.Equal(got, state) {
		t.Fatalf("Verify: %q, %v", got, err)
	}
	// Rotation: cookies of the previous key still verify; the old signer
	// does not know the new key.
	if got, err := cur.Verify(old.Sign(state)); err != nil || !bytes.Equal(got, state) {
		t.Fatalf("old cookie: %q, %v", got, err)
	}
	if _, err := old.Verify(c); !errors.Is(err, session.ErrBadCookie) {
		t.Fatalf("new cookie under the old key: %v", err)
	}
	for name, bad := range map[string][]byte{
		"empty":       nil,
		"tag only":    c[len(state):],
		"short":       c[:sha256.Size-1],
		"state bit":   flip(c, 3),
		"tag bit":     flip(c, len(c)-1),
		"state added": append([]byte{0}, c...),
	} {
		if _, err := cur.Verify(bad); !errors.Is(err, session.ErrBadCookie) {
			t.Errorf("%s: %v, want session.ErrBadCookie", name, err)
		}
	}
	if _, err := session.NewSigner(make([]byte, session.MinKeySize-1)); err == nil {
		t.Error("short key accepted")
	}
	if _, err := session.NewSigner(newKey, []byte("short")); err == nil {
		t.Error("short previous key accepted")
	}
	// An empty state signs to a tag alone, which verifies.
	if got, err := cur.Verify(cur.Sign(nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty state: %q, %v", got, err)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x80
	return c
}

// FuzzVerify: any cookie is checked without panicking, and only a signed
// one verifies.
func FuzzVerify(f *testing.F) {
	s, err := session.NewSigner([]byte("fuzzing key, long enough......."))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add(s.Sign([]byte("state")))
	f.Fuzz(func(t *testing.T, c []byte) {
		state, err := s.Verify(c)
		if err == nil && !bytes.Equal(s.Sign(state), c) {
			t.Fatalf("%x verified but is not the signature of %x", c, state)
		}
	})
}
