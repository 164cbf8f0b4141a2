package hostile

import (
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// inNetns runs the calling test again in a fresh network namespace whose
// loopback interface carries multicast, and merges the records it writes.
// It returns true in the re-executed test, which then runs the body (as in
// transport/multicast_linux_test.go).
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envNetns) == t.Name() {
		for _, args := range [][]string{
			{"link", "set", "lo", "up", "multicast", "on"},
			{"route", "add", "239.0.0.0/8", "dev", "lo"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace for multicast on lo")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2) to configure the namespace")
	}
	recs := filepath.Join(t.TempDir(), "records.jsonl")
	args := []string{"-test.run=^" + t.Name() + "$", "-test.v", "-test.count=1"}
	if long() {
		args = append(args, "-hostile.long", "-test.timeout=50m")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envNetns+"="+t.Name(), envBin+"="+rserpoolBin, envChildReport+"="+recs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	mergeChildRecords(recs)
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("test in a network namespace failed: %v\n%s", err, out)
	}
	t.Logf("ran in a fresh network namespace:\n%s", out)
	return false
}

const announceGroup = "239.0.0.50:3863"

// TestAnnounceFlood floods the ASAP announce group that the pe-agent and
// the proxy's pool-user cache listen to with thousands of fake registrars
// and with garbage: their learned-registrar lists must stay bounded, and
// the configured registrar must keep serving them.
func TestAnnounceFlood(t *testing.T) {
	if !inNetns(t) {
		return
	}
	sc := currentScale()
	w := fullWorld(t, sc,
		fmt.Sprintf("[announce]\ngroup = %q\ninterface = \"lo\"\n", announceGroup),
		fmt.Sprintf("announce_group = %q\nannounce_interface = \"lo\"\n", announceGroup))
	snd, err := transport.NewMulticastSender(announceGroup, "lo", 1, true)
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	agentID := w.agentID(t)
	agentProbe := func() error { return resolvesTo(w.pu, agentPool, agentID) }

	const perDatagram = 1000 // fake registrar addresses per announce
	datagrams := max(1, sc.Announces/10)
	next := 0 // fake addresses used so far: every flood announces new ones
	flood := func(t *testing.T, d *daemon) (int64, string) {
		before := d.rssKB(t)
		var sent int64
		for i := range datagrams {
			sa := &wire.ServerAnnounce{ServerID: 0x60000000 + uint32(next)}
			for range perDatagram {
				n := next
				next++
				a := netip.AddrFrom4([4]byte{127, byte(1 + n>>16&0x7f), byte(n >> 8), byte(n)})
				sa.Transports = append(sa.Transports, wire.Transport{Type: wire.TransportTCP, Port: uint16(20000 + n%40000), Addrs: []netip.Addr{a}})
			}
			b, err := sa.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if snd.Send(b) == nil {
				sent++
			}
			if i%4 == 3 {
				time.Sleep(time.Millisecond) // pace: the receivers' socket buffers hold a few datagrams
			}
		}
		time.Sleep(time.Second) // let the receivers take in what is queued before measuring
		grew := d.rssKB(t) - before
		if grew > 12*1024 {
			t.Errorf("%s RSS grew by %d KiB while %d fake registrars were announced: the learned list is not bounded", d.name, grew, sent*perDatagram)
		}
		return sent, fmt.Sprintf("%d distinct fake registrars announced; RSS grew by %d KiB; the configured registrar kept serving", sent*perDatagram, grew)
	}
	w.runAttack(t, attack{name: "announce flood: distinct fake registrars", unit: "datagrams", target: w.agent, probe: agentProbe,
		run: func(t *testing.T) (int64, string) { return flood(t, w.agent) }})
	w.runAttack(t, attack{name: "announce flood: distinct fake registrars", unit: "datagrams", target: w.proxy.daemon, probe: w.proxyProbe,
		run: func(t *testing.T) (int64, string) { return flood(t, w.proxy.daemon) }})

	garbage := func(t *testing.T) (int64, string) {
		r := mrand.New(mrand.NewPCG(11, 12))
		vs := loadVectors(t)
		var seeds [][]byte
		for _, v := range vs {
			if strings.HasPrefix(v.name, "asap-server-announce") {
				seeds = append(seeds, v.data)
			}
		}
		var sent int64
		for i := range sc.Announces {
			var b []byte
			switch i % 4 {
			case 0:
				b = mutate(r, seeds[r.IntN(len(seeds))])
			case 1: // every ASAP and ENRP message type, on the wrong port
				b = vs[i/4%len(vs)].data
			case 2:
				b = make([]byte, 1+r.IntN(1400))
				for j := range b {
					b[j] = byte(r.Uint32())
				}
			case 3:
				b = mutate(r, seeds[r.IntN(len(seeds))])
				b = append(b, make([]byte, 60000)...) // giant datagram
			}
			if snd.Send(b) == nil {
				sent++
			}
			if i%16 == 15 {
				time.Sleep(time.Millisecond) // pace, as above
			}
		}
		return sent, "ignored"
	}
	w.runAttack(t, attack{name: "announce group: every message type, mutated, random and giant datagrams", unit: "datagrams", target: w.agent, probe: agentProbe, run: garbage})
	w.runAttack(t, attack{name: "announce group: every message type, mutated, random and giant datagrams", unit: "datagrams", target: w.proxy.daemon, probe: w.proxyProbe, run: garbage})
}
