package wire

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func seedFuzz(f *testing.F, p Protocol) {
	for _, v := range loadVectorsOrNil(f) {
		if v.proto == p {
			f.Add(v.data)
		}
	}
	for _, g := range specGoldens {
		if g.proto == p {
			f.Add(parseHex(f, g.hex))
		}
	}
	// Unknown parameters with each action bit pattern, at the top level
	// and nested.
	for _, h := range []string{
		"05 00 00 18 0009000c 4563686f 506f6f6c c1230007 deadbe00",
		"05 00 00 18 0009000c 4563686f 506f6f6c 81230008 00000003",
		"01 00 00 40 0009000c 4563686f 506f6f6c 000a0030 12345678 00000000 0000001e c0000005 ff000000 00050010 1b580000 00010008 c0000201 00080008 00000001",
		"03 00 00 28 0a0b0c0d 00000000 0009000c 4563686f 506f6f6c 000a0010 00000001 00000000 00000000",
	} {
		f.Add(parseHex(f, h))
	}
}

// loadVectorsOrNil returns the RSPLIB vectors, or none when they are
// absent: fuzzing then starts from the spec goldens only.
func loadVectorsOrNil(f *testing.F) []vector {
	f.Helper()
	vs, err := readVectors(f)
	if err != nil {
		f.Logf("fuzzing without RSPLIB seeds: %v", err)
	}
	return vs
}

func fuzzRoundTrip(t *testing.T, p Protocol, data []byte) {
	m1, err := Parse(p, data)
	if err != nil {
		if _, ok := err.(*ParseError); !ok {
			t.Fatalf("error %T is not *ParseError: %v", err, err)
		}
		return
	}
	enc, err := Marshal(m1)
	if err != nil {
		t.Fatalf("Marshal of a decoded %s: %v", MessageName(m1), err)
	}
	if len(enc) > len(data)+4 {
		t.Fatalf("encoding grew from %d to %d bytes", len(data), len(enc))
	}
	m2, err := Parse(p, enc)
	if err != nil {
		t.Fatalf("re-Parse of %x: %v", enc, err)
	}
	// Unrecognized parameters are not re-encoded.
	if d := cmp.Diff(m1, m2, cmpOpts, cmpopts.IgnoreTypes(Unrecognized{}), cmpopts.EquateEmpty()); d != "" {
		t.Fatalf("decode→encode→decode differs (-first +second):\n%s", d)
	}
	enc2, err := Marshal(m2)
	if err != nil || !equalBytes(enc, enc2) {
		t.Fatalf("second encoding differs: %x vs %x (%v)", enc, enc2, err)
	}
}

func FuzzParseASAP(f *testing.F) {
	seedFuzz(f, ASAP)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRoundTrip(t, ASAP, data) })
}

func FuzzParseENRP(f *testing.F) {
	seedFuzz(f, ENRP)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRoundTrip(t, ENRP, data) })
}
