package registrar

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// enrpE2EConfig: short ENRP timers (death detected within about 1 s), long
// keep-alives so that a taken-over PE that does not re-register keeps its
// entry for the whole test.
const enrpE2EConfig = `
[timers]
keepalive_interval = "30s"
keepalive_timeout = "30s"
[enrp]
peer_heartbeat = "200ms"
max_time_last_heard = "600ms"
max_time_no_response = "400ms"
takeover_expiry = "1s"
mentor_discovery = "1s"
table_chunk_pes = 1024
table_chunk_bytes = 60000
`

// startENRPProc starts a registrar process with an ENRP listener on
// loopback and the given static peers, and waits until it serves ASAP.
func startENRPProc(t *testing.T, peers ...string) *proc {
	t.Helper()
	args := []string{"-enrp", "tcp://127.0.0.1:0"}
	for _, p := range peers {
		args = append(args, "-peer", p)
	}
	p := startProc(t, enrpE2EConfig, args...)
	p.waitLog("serving ASAP", 20*time.Second)
	return p
}

// dumpJSON is what "rserpool ctl handlespace -json" prints.
type dumpJSON struct {
	Registrar string `json:"registrar"`
	Elements  int    `json:"elements"`
	Pools     []struct {
		Handle   string `json:"handle"`
		Elements []struct {
			ID   string `json:"id"`
			Home string `json:"home"`
			Port uint16 `json:"port"`
		} `json:"elements"`
	} `json:"pools"`
	Checksums []struct {
		Owner    string `json:"owner"`
		Elements int    `json:"elements"`
		Checksum string `json:"checksum"`
	} `json:"checksums"`
}

// ctlHandlespace runs "rserpool ctl handlespace -json" against addr.
func ctlHandlespace(t *testing.T, addr string) dumpJSON {
	t.Helper()
	out, err := exec.Command(rserpoolBin(t), "ctl", "handlespace", "-registrar", addr, "-json").Output()
	if err != nil {
		t.Fatalf("ctl handlespace %s: %v (%s)", addr, err, out)
	}
	var d dumpJSON
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("ctl handlespace output %s: %v", out, err)
	}
	return d
}

// content is the comparable part of a dump: PEs with their home, and the
// owner checksums.
func (d dumpJSON) content() string {
	var s []string
	for _, p := range d.Pools {
		for _, e := range p.Elements {
			s = append(s, fmt.Sprintf("%s/%s@%s:%d", p.Handle, e.ID, e.Home, e.Port))
		}
	}
	slices.Sort(s)
	for _, c := range d.Checksums {
		s = append(s, fmt.Sprintf("%s=%s/%d", c.Owner, c.Checksum, c.Elements))
	}
	return fmt.Sprint(s)
}

// waitSame polls ctl handlespace at every registrar until all show the
// same content with want PEs; it returns how long that took.
func waitSame(t *testing.T, want int, d time.Duration, ps ...*proc) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		var dumps []dumpJSON
		same := true
		for _, p := range ps {
			dumps = append(dumps, ctlHandlespace(t, p.enrp))
		}
		for _, x := range dumps {
			if x.Elements != want || x.content() != dumps[0].content() {
				same = false
			}
		}
		if same {
			return time.Since(start)
		}
		if time.Since(start) > d {
			for i, x := range dumps {
				t.Logf("registrar %s: %s", ps[i].enrp, x.content())
			}
			t.Fatalf("handlespaces differ after %v", d)
		}
		time.Sleep(50 * time.Millisecond) // polling other processes
	}
}

// waitVisible resolves pool at every registrar until PE id is there with
// a home accepted by homeOK; it returns the time taken.
func waitVisible(t *testing.T, pus []*client, pool string, id uint32, d time.Duration, homeOK func(uint32) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for _, pu := range pus {
		for {
			hr := pu.resolve(pool, 128)
			if slices.ContainsFunc(hr.Elements, func(e wire.PoolElement) bool { return e.ID == id && homeOK(e.HomeServer) }) {
				break
			}
			if time.Since(start) > d {
				t.Fatalf("PE 0x%x not visible as wanted within %v: %+v", id, d, hr.Elements)
			}
			time.Sleep(2 * time.Millisecond) // polling another process
		}
	}
	return time.Since(start)
}

func TestE2EENRPReplicationTakeoverMentor(t *testing.T) {
	r1 := startENRPProc(t)
	r2 := startENRPProc(t, r1.enrp)
	r3 := startENRPProc(t, r1.enrp, r2.enrp)
	rs := []*proc{r1, r2, r3}
	pus := []*client{dial(t, r1.asap), dial(t, r2.asap), dial(t, r3.asap)}

	// A PE at each registrar is visible at all three within 1 s.
	var worst time.Duration
	for i, r := range rs {
		pe := dial(t, r.asap)
		pe.autoAck.Store(true)
		id := uint32(0x100 + i)
		if resp := pe.register(regMsg("ENRPPool", id, uint16(7000+i), wire.PolicyRoundRobin)); resp.Reject {
			t.Fatalf("register at %s: %+v", r.asap, resp.Error)
		}
		home := r.id
		d := waitVisible(t, pus, "ENRPPool", id, time.Second, func(h uint32) bool { return h == home })
		worst = max(worst, d)
	}
	t.Logf("propagation to all three registrars: worst %v", worst)

	// ctl handlespace shows the same handlespace and checksums everywhere.
	waitSame(t, 3, 2*time.Second, rs...)
	d1 := ctlHandlespace(t, r1.enrp)
	if len(d1.Checksums) != 3 {
		t.Fatalf("want 3 owners, got %+v", d1.Checksums)
	}

	// SIGKILL r3: its PE is taken over by a survivor and still resolvable.
	killed := time.Now()
	if err := r3.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r3.cmd.Wait()
	survivor := func(h uint32) bool { return h == r1.id || h == r2.id }
	waitVisible(t, pus[:2], "ENRPPool", 0x102, 3*time.Second, survivor)
	t.Logf("takeover of the killed registrar's PE visible at both survivors after %v", time.Since(killed))
	waitSame(t, 3, 2*time.Second, r1, r2)

	// A registrar started later gets the whole handlespace from its mentor.
	started := time.Now()
	r4 := startENRPProc(t, r1.enrp)
	t.Logf("late registrar serving after %v", time.Since(started))
	waitSame(t, 3, 2*time.Second, r1, r2, r4)
	for _, r := range []*proc{r1, r2, r4} {
		if code := r.stop(); code != 0 {
			t.Errorf("registrar %s exit code %d", r.enrp, code)
		}
	}
}

func jsonUnmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", b, err)
	}
	return nil
}
