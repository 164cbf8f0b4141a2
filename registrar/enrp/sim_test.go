package enrp

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/rserpool/rserpool/handlespace"
	"github.com/rserpool/rserpool/wire"
)

// The simulation runs several Nodes, each with its own Handlespace, on
// virtual time. Messages are encoded and parsed with package wire on the
// way, delivered in FIFO order after a fixed latency, and dropped across
// partitions or to stopped nodes. Pool elements are modelled too: they
// re-register periodically at their home (or, when it is unreachable, at the
// first reachable registrar, as a pe-agent hunts), adopt a registrar that
// sends them a Keep-Alive with H=1 when they can reach it, and a registrar
// that owns a PE it cannot reach removes it after a keep-alive timeout and
// announces the DEL_PE.

var simTimers = Config{
	PeerHeartbeat:     time.Second,
	MaxTimeLastHeard:  2 * time.Second,
	MaxTimeNoResponse: time.Second,
	TakeoverExpiry:    2 * time.Second,
	MentorDiscovery:   2 * time.Second,
}

const (
	simLatency   = time.Millisecond
	simKATimeout = 2 * time.Second
	simRereg     = 5 * time.Second
	simLifeMS    = 30000
)

type simNode struct {
	addr      string
	id        uint32
	hs        *handlespace.Handlespace
	n         *Node
	up        bool
	ready     bool
	takenOver int       // KeepAliveHome outputs
	lost      int       // OwnershipLost outputs
	inits     int       // Init Takeover messages sent
	tookAt    time.Time // first KeepAliveHome
}

type simPE struct {
	handle wire.PoolHandle
	id     uint32
	host   int // node whose side of the network the PE lives on
	home   int // registrar the PE believes is its home
	alive  bool
}

type simMsg struct {
	from, to int
	at       time.Time
	data     []byte // nil: tell node to that from's address is unreachable
}

type simCheck struct {
	node int
	pe   *simPE
	at   time.Time
}

type sim struct {
	t       testing.TB
	cfg     Config
	now     time.Time
	nodes   []*simNode
	q       []simMsg
	cut     map[[2]int]bool
	pes     []*simPE
	checks  []simCheck
	nextReg time.Time
	rng     *rand.Rand
	static  func(i int) []int
	dup     bool // deliver every message twice
	// refuse reports a send to a stopped registrar back to the sender as
	// PeerUnreachable (its host refuses the connection), as a SIGKILLed
	// process's host does; a partition stays a black hole.
	refuse   bool
	reorder  bool // deliver messages with random extra delay (per-link order kept only by chance)
	sent     int
	nextID   uint32
	steps    int
	maxSteps int
}

func newSim(t testing.TB, cfg Config, nodes int) *sim {
	return newSimWith(t, cfg, nodes, nil)
}

// newSimWith starts nodes registrars; static(i) lists the nodes registrar i
// is configured with (nil: all others).
func newSimWith(t testing.TB, cfg Config, nodes int, static func(i int) []int) *sim {
	s := &sim{static: static,
		t: t, cfg: cfg, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		cut: make(map[[2]int]bool), rng: rand.New(rand.NewPCG(1, 2)), nextID: 0x100,
		maxSteps: 5_000_000,
	}
	s.nextReg = s.now.Add(simRereg)
	for i := 0; i < nodes; i++ {
		s.nodes = append(s.nodes, &simNode{addr: fmt.Sprintf("tcp://10.0.0.%d:9901", i+1)})
	}
	for i := range s.nodes {
		s.start(i)
	}
	return s
}

func (s *sim) start(i int) {
	nd := s.nodes[i]
	cfg := s.cfg
	cfg.ID = s.nextID
	s.nextID += 0x100
	cfg.Rand = rand.New(rand.NewPCG(uint64(cfg.ID), 7))
	cfg.ServerInfo = wire.ServerInfo{Transport: wire.Transport{
		Type: wire.TransportTCP, Port: 9901, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})},
	}}
	var peers []string
	for j, o := range s.nodes {
		if j != i && s.static == nil {
			peers = append(peers, o.addr)
		}
	}
	if s.static != nil {
		for _, j := range s.static(i) {
			peers = append(peers, s.nodes[j].addr)
		}
	}
	nd.id, nd.up, nd.ready = cfg.ID, true, false
	nd.hs = handlespace.New(handlespace.Options{Rand: rand.New(rand.NewPCG(3, 4))})
	nd.n = New(cfg, nd.hs, peers, s.now)
}

func (s *sim) kill(i int) { s.nodes[i].up = false }

func (s *sim) partition(a, b []int, on bool) {
	for _, i := range a {
		for _, j := range b {
			s.cut[[2]int{i, j}], s.cut[[2]int{j, i}] = on, on
		}
	}
}

func (s *sim) reachable(i, j int) bool {
	return s.nodes[i].up && s.nodes[j].up && !s.cut[[2]int{i, j}]
}

// peReachable: the PE lives on its host's side of the network; it can reach
// registrar i when i runs and no partition separates them.
func (s *sim) peReachable(i int, pe *simPE) bool {
	return s.nodes[i].up && !s.cut[[2]int{i, pe.host}]
}

func (s *sim) byAddr(a string) int {
	for i, nd := range s.nodes {
		if nd.addr == a {
			return i
		}
	}
	return -1
}

func (s *sim) enqueue(from, to int, m wire.Message) {
	b, err := m.AppendBinary(nil)
	if err != nil {
		s.t.Fatalf("node %d: encoding %T: %v", from, m, err)
	}
	at := s.now.Add(simLatency)
	if s.reorder {
		at = at.Add(time.Duration(s.rng.IntN(20)) * time.Millisecond)
	}
	s.sent++
	s.insert(simMsg{from: from, to: to, at: at, data: b})
	if s.dup {
		s.insert(simMsg{from: from, to: to, at: at.Add(3 * time.Millisecond), data: b})
	}
}

func (s *sim) insert(m simMsg) {
	i := len(s.q)
	for i > 0 && s.q[i-1].at.After(m.at) {
		i--
	}
	s.q = append(s.q, simMsg{})
	copy(s.q[i+1:], s.q[i:])
	s.q[i] = m
}

func (s *sim) process(i int, outs []Output) {
	nd := s.nodes[i]
	for _, o := range outs {
		switch o.Kind {
		case Send:
			if _, ok := o.Msg.(*wire.InitTakeover); ok {
				nd.inits++
			}
			if o.Multicast {
				for j := range s.nodes {
					if j != i && s.reachable(i, j) {
						s.enqueue(i, j, o.Msg)
					}
				}
				continue
			}
			if j := s.byAddr(o.To); j >= 0 && s.reachable(i, j) {
				s.enqueue(i, j, o.Msg)
			} else if j >= 0 && s.refuse && !s.nodes[j].up && !s.cut[[2]int{i, j}] {
				s.insert(simMsg{from: j, to: i, at: s.now.Add(simLatency)})
			}
		case Ready:
			nd.ready = true
		case KeepAliveHome:
			nd.takenOver++
			if nd.tookAt.IsZero() {
				nd.tookAt = s.now
			}
			if pe := s.findPE(o.Handle, o.PEID); pe != nil && pe.alive && s.peReachable(i, pe) {
				pe.home = i
			} else {
				s.checks = append(s.checks, simCheck{node: i, pe: pe, at: s.now.Add(simKATimeout)})
			}
		case OwnershipLost:
			nd.lost++
		}
	}
}

func (s *sim) findPE(h wire.PoolHandle, id uint32) *simPE {
	for _, pe := range s.pes {
		if pe.handle == h && pe.id == id {
			return pe
		}
	}
	return nil
}

func simElement(id, home uint32) wire.PoolElement {
	return wire.PoolElement{
		ID: id, HomeServer: home, RegistrationLife: simLifeMS,
		User:   wire.Transport{Type: wire.TransportTCP, Port: uint16(7000 + id%1000), Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		Policy: wire.Policy{Type: wire.PolicyRoundRobin},
	}
}

// register registers pe at node i, as the registrar's ASAP side does.
func (s *sim) register(i int, pe *simPE) {
	nd := s.nodes[i]
	if old := pe.home; old != i && old >= 0 {
		s.checks = append(s.checks, simCheck{node: old, pe: pe, at: s.now.Add(simKATimeout)})
	}
	pe.home = i
	el := simElement(pe.id, nd.id)
	if _, _, err := nd.hs.Register(wire.PoolHandle(pe.handle), el, s.now); err != nil {
		s.t.Fatalf("register: %v", err)
	}
	nd.hs.SetExpiry(wire.PoolHandle(pe.handle), pe.id, time.Time{})
	s.process(i, nd.n.LocalChange(s.now, wire.ActionAddPE, wire.PoolHandle(pe.handle), el))
}

// addPE creates a PE living next to node i and registers it there.
func (s *sim) addPE(i int, handle wire.PoolHandle, id uint32) *simPE {
	pe := &simPE{handle: handle, id: id, host: i, home: -1, alive: true}
	s.pes = append(s.pes, pe)
	s.register(i, pe)
	return pe
}

// removePE deregisters a PE at its home (and stops it).
func (s *sim) removePE(pe *simPE) {
	pe.alive = false
	if pe.home >= 0 && s.nodes[pe.home].up {
		s.unown(pe.home, pe)
	}
}

func (s *sim) unown(i int, pe *simPE) {
	nd := s.nodes[i]
	e, ok := nd.hs.Get(wire.PoolHandle(pe.handle), pe.id)
	if !ok || e.HomeServer != nd.id {
		return
	}
	el := e.PoolElement()
	nd.hs.Deregister(wire.PoolHandle(pe.handle), pe.id)
	s.process(i, nd.n.LocalChange(s.now, wire.ActionDelPE, wire.PoolHandle(pe.handle), el))
}

func (s *sim) reregister() {
	// Keep-alive: a registrar drops, after the keep-alive timeout, owned PEs
	// that are gone, unreachable or registered elsewhere now.
	for i, nd := range s.nodes {
		if !nd.up {
			continue
		}
		nd.hs.OwnedBy(nd.id, func(e *handlespace.Element) bool {
			pe := s.findPE(e.Pool, e.ID)
			if !pe.alive || pe.home != i || !s.peReachable(i, pe) {
				s.checks = append(s.checks, simCheck{node: i, pe: pe, at: s.now.Add(simKATimeout)})
			}
			return true
		})
	}
	for _, pe := range s.pes {
		if !pe.alive {
			continue
		}
		target := -1
		if pe.home >= 0 && s.peReachable(pe.home, pe) {
			target = pe.home
		} else {
			for j := range s.nodes {
				k := (pe.host + j) % len(s.nodes)
				if s.peReachable(k, pe) && s.nodes[k].ready {
					target = k
					break
				}
			}
		}
		if target >= 0 {
			s.register(target, pe)
		}
	}
}

// run advances virtual time by d, delivering messages and firing timers.
func (s *sim) run(d time.Duration) {
	end := s.now.Add(d)
	for {
		s.steps++
		if s.steps > s.maxSteps {
			s.t.Fatalf("simulation did not settle after %d steps", s.steps)
		}
		next := end
		if len(s.q) > 0 && s.q[0].at.Before(next) {
			next = s.q[0].at
		}
		for _, nd := range s.nodes {
			if nd.up {
				if dl := nd.n.NextDeadline(); dl.Before(next) {
					next = dl
				}
			}
		}
		if s.nextReg.Before(next) {
			next = s.nextReg
		}
		for _, c := range s.checks {
			if c.at.Before(next) {
				next = c.at
			}
		}
		if next.After(s.now) {
			s.now = next
		}
		progressed := false
		for len(s.q) > 0 && !s.q[0].at.After(s.now) {
			m := s.q[0]
			s.q = s.q[1:]
			progressed = true
			if m.data == nil {
				if s.nodes[m.to].up {
					s.process(m.to, s.nodes[m.to].n.PeerUnreachable(s.now, s.nodes[m.from].addr))
				}
				continue
			}
			if !s.reachable(m.from, m.to) {
				continue
			}
			msg, err := wire.ParseENRP(m.data)
			if err != nil {
				s.t.Fatalf("node %d sent an undecodable message: %v", m.from, err)
			}
			s.process(m.to, s.nodes[m.to].n.Step(s.now, Source{Addr: s.nodes[m.from].addr}, msg))
		}
		for i, nd := range s.nodes {
			if nd.up && !nd.n.NextDeadline().After(s.now) {
				progressed = true
				s.process(i, nd.n.Tick(s.now))
			}
		}
		if !s.nextReg.After(s.now) {
			s.nextReg = s.now.Add(simRereg)
			s.reregister()
			progressed = true
		}
		keep := s.checks[:0]
		for _, c := range s.checks {
			if c.at.After(s.now) {
				keep = append(keep, c)
				continue
			}
			progressed = true
			if c.pe != nil && s.nodes[c.node].up && (c.pe.home != c.node || !c.pe.alive || !s.peReachable(c.node, c.pe)) {
				s.unown(c.node, c.pe)
			}
		}
		s.checks = keep
		if !progressed && !s.now.Before(end) {
			return
		}
	}
}

// checkConverged asserts that every running node in group holds exactly the
// live PEs, agrees on each PE's home, and that every node's checksum of every
// owner equals the owner's own checksum.
func (s *sim) checkConverged(group []int) {
	s.t.Helper()
	live := 0
	for _, pe := range s.pes {
		if pe.alive {
			live++
		}
	}
	for _, i := range group {
		nd := s.nodes[i]
		if got := nd.hs.NumElements(); got != live {
			s.t.Errorf("node %d (%#x) holds %d PEs, want %d", i, nd.id, got, live)
			for _, pe := range s.pes {
				if e, ok := nd.hs.Get(wire.PoolHandle(pe.handle), pe.id); ok && !pe.alive {
					s.t.Errorf("  removed PE %s/%d still there, home %#x, expiry %v", pe.handle, pe.id, e.HomeServer, e.Expiry.Sub(s.now))
				}
			}
		}
		for _, pe := range s.pes {
			if !pe.alive {
				continue
			}
			e, ok := nd.hs.Get(wire.PoolHandle(pe.handle), pe.id)
			if !ok {
				s.t.Errorf("node %d lost PE %s/%d", i, pe.handle, pe.id)
				continue
			}
			if want := s.nodes[pe.home].id; e.HomeServer != want {
				s.t.Errorf("node %d: PE %s/%d home %#x, want %#x (where it registered)", i, pe.handle, pe.id, e.HomeServer, want)
			}
		}
		for _, j := range group {
			if got, want := nd.hs.Checksum(s.nodes[j].id), s.nodes[j].hs.Checksum(s.nodes[j].id); got != want {
				s.t.Errorf("node %d's checksum of %#x = %#04x, owner's own = %#04x", i, s.nodes[j].id, got, want)
			}
		}
	}
}

func TestSimStartupAndConverge(t *testing.T) {
	s := newSim(t, simTimers, 3)
	s.run(3 * time.Second)
	for i, nd := range s.nodes {
		if !nd.ready {
			t.Fatalf("node %d not ready after 3 s", i)
		}
		ps := nd.n.Peers()
		if len(ps) != 2 {
			t.Fatalf("node %d peers = %+v, want 2", i, ps)
		}
		for _, p := range ps {
			if p.ID == 0 || p.State != PeerActive {
				t.Errorf("node %d: peer %+v not active", i, p)
			}
		}
	}
	for k := uint32(1); k <= 30; k++ {
		s.addPE(int(k%3), wire.PoolHandle(fmt.Sprintf("pool-%d", k%4)), k)
	}
	s.run(100 * time.Millisecond)
	s.checkConverged([]int{0, 1, 2})
	// Deregistrations propagate too.
	s.removePE(s.pes[0])
	s.removePE(s.pes[4])
	s.run(100 * time.Millisecond)
	s.checkConverged([]int{0, 1, 2})
	// A while later nothing has changed: no spurious audits purge anything.
	s.run(20 * time.Second)
	s.checkConverged([]int{0, 1, 2})
}

// TestSimPeersFromListResponses: registrars 0 and 2 know only registrar 1,
// which starts last; they find each other through its List Responses.
func TestSimPeersFromListResponses(t *testing.T) {
	s := newSimWith(t, simTimers, 3, func(i int) []int {
		if i == 1 {
			return nil
		}
		return []int{1}
	})
	s.kill(1)
	s.run(3 * time.Second)
	s.addPE(0, "p", 1)
	s.addPE(2, "p", 2)
	s.start(1)
	s.run(3 * time.Second)
	for i, nd := range s.nodes {
		if got := len(nd.n.Peers()); got != 2 {
			t.Errorf("node %d knows %d peers, want 2: %+v", i, got, nd.n.Peers())
		}
	}
	s.addPE(0, "p", 3)
	s.run(100 * time.Millisecond)
	s.checkConverged([]int{0, 1, 2})
}

func TestSimLateJoinerMentorSync(t *testing.T) {
	s := newSim(t, simTimers, 3)
	s.kill(2)
	s.run(3 * time.Second)
	for k := uint32(1); k <= 500; k++ {
		s.addPE(int(k%2), wire.PoolHandle(fmt.Sprintf("pool-%d", k%7)), k)
	}
	s.run(time.Second)
	s.start(2)
	s.run(300 * time.Millisecond)
	if !s.nodes[2].ready {
		t.Fatal("late joiner not ready 300 ms after start (mentor sync should end it)")
	}
	s.checkConverged([]int{0, 1, 2})
}

func TestSimTakeover(t *testing.T) {
	for _, arb := range []Arbitration{LowerIDWins, HigherIDWins} {
		t.Run(arb.String(), func(t *testing.T) {
			cfg := simTimers
			cfg.Arbitration = arb
			s := newSim(t, cfg, 3)
			s.run(3 * time.Second)
			for k := uint32(1); k <= 12; k++ {
				s.addPE(int(k%3), "pool", k)
			}
			s.run(100 * time.Millisecond)
			s.nextReg = s.now.Add(time.Hour) // takeover before the PEs re-register elsewhere
			s.kill(2)
			killed := s.now
			s.run(4 * time.Second) // last-heard 2 s + no-response 1 s + acks
			a, b := s.nodes[0], s.nodes[1]
			took := a.tookAt
			if took.IsZero() {
				took = b.tookAt
			}
			// Bound: last heard up to one heartbeat before the kill, then
			// MaxTimeLastHeard + MaxTimeNoResponse, then one ack round trip.
			bound := cfg.MaxTimeLastHeard + cfg.MaxTimeNoResponse + 10*time.Millisecond
			if d := took.Sub(killed); took.IsZero() || d > bound {
				t.Errorf("takeover %v after the kill, bound %v", d, bound)
			} else {
				t.Logf("takeover %v after the kill", d)
			}
			if a.takenOver+b.takenOver != 4 || (a.takenOver != 0 && b.takenOver != 0) {
				t.Fatalf("taken over: node0 %d, node1 %d; want all 4 PEs by exactly one", a.takenOver, b.takenOver)
			}
			// Both survivors detect the death at the same tick and both
			// start a takeover, so the arbitration rule decides.
			if a.inits == 0 || b.inits == 0 {
				t.Fatalf("Init Takeovers sent: %d and %d; the scenario needs both", a.inits, b.inits)
			}
			winner := a
			if (arb == LowerIDWins) != (a.id < b.id) {
				winner = b
			}
			if winner.takenOver != 4 {
				t.Errorf("winner under %v: node %#x took %d, want 4", arb, winner.id, winner.takenOver)
			}
			s.checkConverged([]int{0, 1})
			for _, nd := range []*simNode{a, b} {
				if ps := nd.n.Peers(); len(ps) != 2 || ps[1].ID != 0 || ps[1].State != PeerUnknown {
					t.Errorf("node %#x peers after takeover: %+v", nd.id, nd.n.Peers())
				}
			}
			// The dead registrar comes back (new ID at the same address).
			s.start(2)
			s.run(3 * time.Second)
			s.checkConverged([]int{0, 1, 2})
		})
	}
}

func TestSimPartitionHeal(t *testing.T) {
	s := newSim(t, simTimers, 3)
	s.run(3 * time.Second)
	for k := uint32(1); k <= 30; k++ {
		s.addPE(int(k%3), wire.PoolHandle(fmt.Sprintf("pool-%d", k%3)), k)
	}
	s.run(100 * time.Millisecond)
	s.partition([]int{0}, []int{1, 2}, true)
	s.run(10 * time.Second)
	// Both sides keep serving: each side's view holds every live PE.
	for k := uint32(31); k <= 40; k++ {
		s.addPE(int(k%3), "during", k)
	}
	s.removePE(s.pes[1])
	s.run(10 * time.Second)
	s.partition([]int{0}, []int{1, 2}, false)
	s.run(15 * time.Second)
	s.checkConverged([]int{0, 1, 2})
}

func TestSimDuplicatedAndReordered(t *testing.T) {
	s := newSim(t, simTimers, 3)
	s.dup = true
	s.run(3 * time.Second)
	for k := uint32(1); k <= 60; k++ {
		s.addPE(int(k%3), wire.PoolHandle(fmt.Sprintf("pool-%d", k%5)), k)
	}
	s.run(50 * time.Millisecond)
	for _, pe := range s.pes[:20] {
		s.removePE(pe)
	}
	s.run(50 * time.Millisecond)
	s.checkConverged([]int{0, 1, 2})
	// Reordering across links: PEs move between registrars quickly; the audit
	// repairs whatever order the updates arrive in.
	s.reorder = true
	for r := 0; r < 5; r++ {
		for _, pe := range s.pes[20:40] {
			s.register((pe.home+1)%3, pe)
		}
		s.run(10 * time.Millisecond)
	}
	s.reorder = false
	s.run(10 * time.Second)
	s.checkConverged([]int{0, 1, 2})
}

func TestSimLoneSurvivor(t *testing.T) {
	s := newSim(t, simTimers, 2)
	s.run(3 * time.Second)
	for k := uint32(1); k <= 5; k++ {
		s.addPE(1, "pool", k)
	}
	s.run(100 * time.Millisecond)
	s.nextReg = s.now.Add(time.Hour)
	s.kill(1)
	s.run(4 * time.Second)
	if got := s.nodes[0].takenOver; got != 5 {
		t.Fatalf("lone survivor took over %d PEs, want 5", got)
	}
	s.checkConverged([]int{0})
}

// TestSimMentorSync100k syncs a 100,000-PE handlespace (20,000 under the
// race detector, which makes the full size take minutes) to a new registrar
// in chunks of at most 128 PEs / 1400 bytes through the wire codec.
func TestSimMentorSync100k(t *testing.T) {
	pes := 100_000
	if raceEnabled || testing.Short() {
		pes = 20_000
	}
	s, msgs := syncSetup(t, pes, 0)
	if !s.nodes[1].ready {
		t.Fatal("not ready")
	}
	if got := s.nodes[1].hs.NumElements(); got != pes {
		t.Fatalf("synced %d PEs, want %d", got, pes)
	}
	if a, b := s.nodes[0].hs.Checksum(s.nodes[0].id), s.nodes[1].hs.Checksum(s.nodes[0].id); a != b {
		t.Fatalf("checksum after sync %#04x, mentor %#04x", b, a)
	}
	// Request/response pairs: each response holds at most 1400 bytes, which
	// with these 40-byte PEs is the binding limit (34 PEs).
	t.Logf("%d PEs in about %d Handle Table Responses", pes, msgs/2)
	if msgs/2 < pes/35 {
		t.Errorf("%d messages: responses larger than 1400 bytes", msgs)
	}
}

// syncSetup fills node 0 with pes PEs directly, then starts node 1 and runs
// until its start-up sync is over; it returns the number of messages sent
// meanwhile (both directions).
func syncSetup(tb testing.TB, pes int, chunkBytes int) (*sim, int) {
	cfg := simTimers
	cfg.TableChunkBytes = chunkBytes
	s := newSim(tb, cfg, 2)
	s.kill(1)
	s.run(3 * time.Second)
	nd := s.nodes[0]
	for k := 0; k < pes; k++ {
		h := fmt.Sprintf("pool-%d", k%100)
		if _, _, err := nd.hs.Register(wire.PoolHandle(h), simElement(uint32(k+1), nd.id), s.now); err != nil {
			tb.Fatal(err)
		}
	}
	s.nextReg = s.now.Add(time.Hour)
	s.start(1)
	before := s.sent
	for i := 0; i < 2000 && !s.nodes[1].ready; i++ {
		s.run(10 * time.Millisecond)
	}
	return s, s.sent - before
}

func BenchmarkMentorSync(b *testing.B) {
	for _, chunk := range []int{DefaultTableChunkBytes, 64 * 1024} {
		b.Run(fmt.Sprintf("chunk=%dB", chunk), func(b *testing.B) {
			const pes = 100_000
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				cfg := simTimers
				cfg.TableChunkBytes = chunk
				cfg.TableChunkPEs = math.MaxInt32
				if chunk == DefaultTableChunkBytes {
					cfg.TableChunkPEs = DefaultTableChunkPEs
				}
				s := newSim(b, cfg, 2)
				s.kill(1)
				s.run(3 * time.Second)
				nd := s.nodes[0]
				for k := 0; k < pes; k++ {
					nd.hs.Register(wire.PoolHandle(fmt.Sprintf("pool-%d", k%100)), simElement(uint32(k+1), nd.id), s.now)
				}
				s.nextReg = s.now.Add(time.Hour)
				b.StartTimer()
				c0 := cpuTime()
				s.start(1)
				for i := 0; i < 2000 && !s.nodes[1].ready; i++ {
					s.run(10 * time.Millisecond)
				}
				cpu += cpuTime() - c0
				if s.nodes[1].hs.NumElements() != pes {
					b.Fatalf("synced %d", s.nodes[1].hs.NumElements())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pes), "ns/PE")
			// CPU time of the process (all threads, GC included): on a
			// shared, loaded machine this is the steadier figure.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*pes), "cpu-ns/PE")
		})
	}
}

// TestSimChaos kills and restarts registrars, cuts and heals links and adds
// and removes PEs at random for a bounded number of operations, then heals
// everything and checks that every registrar holds exactly the live PEs with
// the same homes and checksums.
func TestSimChaos(t *testing.T) {
	ops := 300
	if testing.Short() {
		ops = 100
	}
	for seed := uint64(1); seed <= *chaosSeeds; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			s := newSim(t, simTimers, 4)
			rng := rand.New(rand.NewPCG(seed, 99))
			s.rng = rand.New(rand.NewPCG(seed, 98))
			s.dup, s.reorder = *chaosReorder, *chaosReorder
			s.run(3 * time.Second)
			var kills, restarts, cuts, heals, adds, removes int
			nextPE := uint32(1)
			for op := 0; op < ops; op++ {
				switch r := rng.IntN(100); {
				case r < 5: // kill a registrar, keeping at least two
					up := 0
					for _, nd := range s.nodes {
						if nd.up {
							up++
						}
					}
					if i := rng.IntN(4); s.nodes[i].up && up > 2 {
						s.kill(i)
						kills++
					}
				case r < 10: // restart a stopped registrar (new ID)
					if i := rng.IntN(4); !s.nodes[i].up {
						s.start(i)
						restarts++
					}
				case r < 13:
					i, j := rng.IntN(4), rng.IntN(4)
					if i != j {
						s.partition([]int{i}, []int{j}, true)
						cuts++
					}
				case r < 18:
					clear(s.cut)
					heals++
				case r < 70:
					i := rng.IntN(4)
					if s.nodes[i].up && s.nodes[i].ready {
						s.addPE(i, wire.PoolHandle(fmt.Sprintf("pool-%d", rng.IntN(5))), nextPE)
						nextPE++
						adds++
					}
				default:
					if len(s.pes) > 0 {
						if pe := s.pes[rng.IntN(len(s.pes))]; pe.alive {
							s.removePE(pe)
							removes++
						}
					}
				}
				s.run(time.Duration(rng.IntN(1500)) * time.Millisecond)
			}
			clear(s.cut)
			s.run(30 * time.Second)
			var group []int
			for i, nd := range s.nodes {
				if nd.up {
					group = append(group, i)
				}
			}
			live := 0
			for _, pe := range s.pes {
				if pe.alive {
					live++
				}
			}
			t.Logf("%d ops: %d kills, %d restarts, %d link cuts, %d heals, %d PE adds, %d removes; %d live PEs at %d registrars, %d messages",
				ops, kills, restarts, cuts, heals, adds, removes, live, len(group), s.sent)
			s.checkConverged(group)
		})
	}
}

var (
	chaosSeeds   = flag.Uint64("chaos.seeds", 3, "number of TestSimChaos runs (seeds 1..N)")
	chaosReorder = flag.Bool("chaos.reorder", false, "TestSimChaos: also duplicate and reorder messages")
)

// BenchmarkHandleUpdate measures one replicated registration: LocalChange at
// the home registrar, encoding, parsing and Step at one peer.
func BenchmarkHandleUpdate(b *testing.B) {
	s := newSim(b, simTimers, 2)
	s.run(3 * time.Second)
	a, p := s.nodes[0], s.nodes[1]
	src := Source{Addr: a.addr}
	buf := make([]byte, 0, 256)
	i := uint32(0)
	for b.Loop() {
		i++
		el := simElement(i%10000+1, a.id)
		for _, o := range a.n.LocalChange(s.now, wire.ActionAddPE, "pool", el) {
			var err error
			if buf, err = o.Msg.AppendBinary(buf[:0]); err != nil {
				b.Fatal(err)
			}
			m, err := wire.ParseENRP(buf)
			if err != nil {
				b.Fatal(err)
			}
			p.n.Step(s.now, src, m)
		}
	}
	if p.hs.NumElements() == 0 {
		b.Fatal("nothing replicated")
	}
}

// cpuTime returns the user+system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSimTakeoverRacesReregistration: the PEs of a killed registrar
// re-register elsewhere on their own (pe-agent) at various moments around
// the takeover; both paths must end with each PE at exactly one home that
// every registrar agrees on.
func TestSimTakeoverRacesReregistration(t *testing.T) {
	for off := 2000 * time.Millisecond; off <= 4500*time.Millisecond; off += 100 * time.Millisecond {
		t.Run(off.String(), func(t *testing.T) {
			s := newSim(t, simTimers, 3)
			s.run(3 * time.Second)
			for k := uint32(1); k <= 9; k++ {
				s.addPE(int(k%3), "pool", k)
			}
			s.run(100 * time.Millisecond)
			s.kill(2)
			s.nextReg = s.now.Add(off)
			s.run(15 * time.Second)
			s.checkConverged([]int{0, 1})
		})
	}
}

// TestSimTakeoverOnRefusal: a SIGKILLed registrar's connections close and
// its host refuses new ones; the survivors probe it at once, the probe
// cannot be sent, and one of them owns its PEs within a few message round
// trips, nowhere near MaxTimeNoResponse. Every survivor agrees afterwards.
func TestSimTakeoverOnRefusal(t *testing.T) {
	for _, n := range []int{2, 3, 5} {
		t.Run(fmt.Sprint(n, "registrars"), func(t *testing.T) {
			s := newSim(t, simTimers, n)
			s.refuse = true
			s.run(3 * time.Second)
			for k := uint32(1); k <= 12; k++ {
				s.addPE(int(k)%n, "pool", k)
			}
			s.run(100 * time.Millisecond)
			s.nextReg = s.now.Add(time.Hour)
			dead := n - 1
			s.kill(dead)
			killed := s.now
			var survivors []int
			for i := 0; i < dead; i++ {
				survivors = append(survivors, i)
				s.process(i, s.nodes[i].n.PeerConnLost(s.now, s.nodes[dead].addr))
			}
			s.run(3 * time.Second)
			var took time.Time
			for _, i := range survivors {
				if at := s.nodes[i].tookAt; !at.IsZero() && (took.IsZero() || at.Before(took)) {
					took = at
				}
			}
			if bound := 10 * simLatency; took.IsZero() || took.Sub(killed) > bound {
				t.Fatalf("takeover %v after the kill, bound %v", took.Sub(killed), bound)
			}
			t.Logf("takeover %v after the kill (%d message latencies)", took.Sub(killed), took.Sub(killed)/simLatency)
			s.checkConverged(survivors)
		})
	}
}

// TestSimTakeoverOnConnLost: when the transport reports the dead peer's
// connection lost (a SIGKILLed process's TCP connections are reset), the
// takeover completes within MaxTimeNoResponse plus an ack round trip.
func TestSimTakeoverOnConnLost(t *testing.T) {
	s := newSim(t, simTimers, 3)
	s.run(3 * time.Second)
	for k := uint32(1); k <= 6; k++ {
		s.addPE(int(k%3), "pool", k)
	}
	s.run(100 * time.Millisecond)
	s.nextReg = s.now.Add(time.Hour)
	s.kill(2)
	killed := s.now
	for i := 0; i < 2; i++ {
		s.process(i, s.nodes[i].n.PeerConnLost(s.now, s.nodes[2].addr))
	}
	s.run(3 * time.Second)
	took := s.nodes[0].tookAt
	if took.IsZero() {
		took = s.nodes[1].tookAt
	}
	if bound := simTimers.MaxTimeNoResponse + 10*time.Millisecond; took.IsZero() || took.Sub(killed) > bound {
		t.Fatalf("takeover %v after the kill, bound %v", took.Sub(killed), bound)
	}
	t.Logf("takeover %v after the kill", took.Sub(killed))
	s.checkConverged([]int{0, 1})
}
