package asap

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vectorDir holds RSPLIB's messages (../shared/testdata).
const vectorDir = "../../../shared/testdata/rsplib-3.4/vectors"

// vectors returns the RSPLIB ASAP and ENRP messages, or none when the
// shared test data is absent.
func vectors(tb testing.TB) (asapMsgs, enrpMsgs [][]byte) {
	files, _ := filepath.Glob(filepath.Join(vectorDir, "*.hex"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		raw, err := hex.DecodeString(strings.Join(strings.Fields(string(b)), ""))
		if err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		if strings.HasPrefix(filepath.Base(f), "asap-") {
			asapMsgs = append(asapMsgs, raw)
		} else {
			enrpMsgs = append(enrpMsgs, raw)
		}
	}
	return asapMsgs, enrpMsgs
}

// seedPrograms are hand-written programs that reach the interesting
// states: limits, connection loss, keep-alive timeouts, takeover,
// ownership moving to a peer and back.
func seedPrograms() []prog {
	var base prog
	for id := byte(1); id <= 7; id++ {
		base = base.register(id%2, 0, id) // pool P, slots 0 and 1 (one source)
	}
	// Peer 0x200 owns P/1 (TCP) and P/2 (SCTP ASAP transport) and dies:
	// the takeover adopts both, the SCTP one gets an association and
	// answers over it; a peer's update for a PE of ours takes it away.
	takeover := prog{}.
		op(opPresence, 0, 0, 0, 0).
		update(0, 1, 0, 0, 0).
		update(0, 2, 0, 1, 0).
		op(opAdvance, 0, 230).
		op(opDialed, 0, 1).
		op(opAck, 3, 0, 2).
		register(0, 1, 5).
		op(opPresence, 1, 0, 0, 0).
		update(1, 5, 1, 0, 1).
		op(opAdvance, 0, 30)
	malformed := prog{}.
		raw(opRawASAP, 0, []byte{0x40, 0, 0, 8, 1, 2, 3, 4}).
		raw(opRawASAP, 0, []byte{0x05, 0, 0xff, 0xff, 0, 9}).
		raw(opRawASAP, 0, []byte{0x05, 0, 0, 0x18, 0, 9, 0, 0xc, 'E', 'c', 'h', 'o', 'P', 'o', 'o', 'l', 0xc1, 0x23, 0, 7, 0xde, 0xad, 0xbe, 0}).
		raw(opRawASAP, 0, []byte{0x03, 0, 0, 4})
	return []prog{
		base,
		base.op(opClose, 0).op(opAdvance, 0, 40),
		base.op(opReload, 0, 1).op(opClose, 1).op(opAdvance, 0, 30).register(1, 0, 3),
		base.op(opAdvance, 0, 20).op(opAck, 0, 0, 1).op(opAdvance, 0, 30),
		base.op(opUnreachable, 2, 0, 1).op(opUnreachable, 3, 0, 1).op(opDeregister, 1, 0, 2),
		base.op(opResolve, 2, 0xff, 0).op(opResolve, 3, 0, 5),
		takeover,
		base.op(opPresence, 1, 0, 0, 0).op(opUpdate, 1, 0, 2, 100, 0, 0, 0, 1, 0, 0).op(opAdvance, 0, 10),
		prog{}.register(2, 2, 1).register(2, 3, 2).register(0, 2, 3).register(2, 4, 1).register(2, 4, 2).register(2, 4, 3),
		prog{}.op(opReload, 0, 6).register(0, 0, 1).op(opAdvance, 0, 60),
		malformed,
	}
}

// FuzzCore drives the core and an ENRP node from several simulated
// connections and peers with arbitrary programs (see sim.run):
// registrations, deregistrations, keep-alive acks, resolutions,
// unreachable reports, connection ends, time, raw ASAP and ENRP bytes,
// Handle Updates, table responses, takeovers and reloads, with any field
// values. After every step the invariants of sim.check hold, every output
// message decodes and fits the connection, and nothing panics.
func FuzzCore(f *testing.F) {
	asapMsgs, enrpMsgs := vectors(f)
	for _, p := range seedPrograms() {
		f.Add([]byte(p))
	}
	var all prog
	for i, m := range asapMsgs {
		p := prog{}.raw(opRawASAP, byte(i), m)
		f.Add([]byte(p))
		all = append(all, p...)
	}
	for i, m := range enrpMsgs {
		p := prog{}.raw(opRawENRP, byte(i), m)
		f.Add([]byte(p))
		all = append(all, p...)
	}
	f.Add([]byte(append(seedPrograms()[0], all...)))
	f.Fuzz(func(t *testing.T, data []byte) {
		newSim(t).run(data)
	})
}

// TestSeedPrograms runs the seeds as tests.
func TestSeedPrograms(t *testing.T) {
	for i, p := range seedPrograms() {
		s := newSim(t)
		s.run(p)
		if i == 0 && s.hs.NumElements() != 0 {
			t.Errorf("seed 0: %d PEs left after every keep-alive went unanswered", s.hs.NumElements())
		}
		if i == 6 {
			log := strings.Join(s.log, "\n")
			for _, want := range []string{`adopt "P"/1`, `adopt "P"/2`, `dialed "P"/2 ok=true`, `disown "Q"/5`} {
				if !strings.Contains(log, want) {
					t.Errorf("takeover seed: no %q in\n%s", want, log)
				}
			}
		}
	}
}
