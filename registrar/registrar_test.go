package registrar

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func TestRegisterResolveKeepAliveTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.Timers.KeepAliveInterval = 200 * time.Millisecond
	cfg.Timers.KeepAliveTimeout = 300 * time.Millisecond
	h := start(t, cfg)
	pe := dial(t, h.addr)
	pu := dial(t, h.addr)

	resp := pe.register(regMsg("EchoPool", 0x1234, 7001, wire.PolicyRoundRobin))
	if resp.Reject || resp.ID != 0x1234 || resp.PoolHandle != "EchoPool" {
		t.Fatalf("registration response %+v", resp)
	}
	add := h.waitChange(t, wire.ActionAddPE, 0x1234, time.Second)
	if add.Element.HomeServer != uint32(h.r.ID()) || add.Element.ASAP.Type != wire.TransportTCP {
		t.Errorf("ADD_PE element %+v: want home %v and a TCP ASAP transport", add.Element, h.r.ID())
	}

	hr := pu.resolve("EchoPool", 0)
	if !hr.Accept && hr.Error != nil {
		t.Fatalf("resolution failed: %+v", hr.Error)
	}
	if hr.Policy == nil || hr.Policy.Type != wire.PolicyRoundRobin {
		t.Errorf("policy parameter %+v, want Round Robin", hr.Policy)
	}
	if len(hr.Elements) != 1 || hr.Elements[0].ID != 0x1234 || hr.Elements[0].User.Port != 7001 {
		t.Fatalf("elements %+v", hr.Elements)
	}
	if hr.Elements[0].ASAP.Type != 0 {
		t.Errorf("resolution carries the ASAP transport: %+v", hr.Elements[0].ASAP)
	}

	// Keep-alives arrive on the registration connection; answer two.
	for i := 0; i < 2; i++ {
		ka := expect[*wire.EndpointKeepAlive](t, pe)
		if ka.Home || ka.ServerID != uint32(h.r.ID()) || ka.PoolHandle != "EchoPool" || !ka.HasID || ka.ID != 0x1234 {
			t.Fatalf("keep-alive %+v", ka)
		}
		pe.send(&wire.EndpointKeepAliveAck{PoolHandle: "EchoPool", ID: 0x1234})
	}
	// Stop answering: removed within interval + timeout (+ scheduling slack).
	expect[*wire.EndpointKeepAlive](t, pe)
	t0 := time.Now()
	h.waitChange(t, wire.ActionDelPE, 0x1234, 5*time.Second)
	if d := time.Since(t0); d > cfg.Timers.KeepAliveTimeout+2*time.Second { // slack for a loaded CI machine; exactness is tested with synctest
		t.Errorf("removed %v after the unanswered keep-alive, timeout is %v", d, cfg.Timers.KeepAliveTimeout)
	}
	hr = pu.resolve("EchoPool", 0)
	if cause(hr.Error) != wire.CauseUnknownPoolHandle || len(hr.Elements) != 0 || hr.Policy != nil {
		t.Fatalf("after removal: %+v", hr)
	}
	if v := testutil.ToFloat64(h.r.m.removals.WithLabelValues(reasonKeepAlive)); v != 1 {
		t.Errorf("keepalive removals = %v", v)
	}
}

func TestResolutionItemsAndPolicy(t *testing.T) {
	h := start(t, testConfig())
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	for i := uint32(1); i <= 200; i++ {
		if r := pe.register(regMsg("Big", i, 7000, wire.PolicyRoundRobin)); r.Reject {
			t.Fatalf("register %d: %+v", i, r.Error)
		}
	}
	pu := dial(t, h.addr)
	for _, tc := range []struct {
		items uint32
		want  int
	}{{0, 3}, {1, 1}, {10, 10}, {500, 128}, {0xffffffff, 128}} {
		hr := pu.resolve("Big", tc.items)
		if len(hr.Elements) != tc.want || hr.Policy == nil {
			t.Errorf("items %d: got %d PEs (policy %v), want %d", tc.items, len(hr.Elements), hr.Policy, tc.want)
		}
	}
	// Round robin over 200 PEs with 1 item: 200 resolutions visit each once.
	seen := map[uint32]int{}
	for i := 0; i < 200; i++ {
		hr := pu.resolve("Big", 1)
		if len(hr.Elements) != 1 {
			t.Fatalf("resolution %d: %+v", i, hr)
		}
		seen[hr.Elements[0].ID]++
	}
	if len(seen) != 200 {
		t.Errorf("round robin visited %d distinct PEs in 200 picks, want 200", len(seen))
	}
}

func TestReRegistrationAndConsistency(t *testing.T) {
	h := start(t, testConfig())
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	if r := pe.register(regMsg("P", 1, 7000, wire.PolicyRoundRobin)); r.Reject {
		t.Fatal(r.Error)
	}
	// Same ID again = update in place.
	if r := pe.register(regMsg("P", 1, 7002, wire.PolicyRoundRobin)); r.Reject {
		t.Fatal(r.Error)
	}
	if n := h.numElements(t); n != 1 {
		t.Fatalf("elements after re-registration = %d", n)
	}
	hr := dial(t, h.addr).resolve("P", 0)
	if len(hr.Elements) != 1 || hr.Elements[0].User.Port != 7002 {
		t.Fatalf("re-registration did not update: %+v", hr.Elements)
	}
	// A different policy in the same pool: 0x5.
	r := pe.register(regMsg("P", 2, 7000, wire.PolicyRandom))
	if !r.Reject || cause(r.Error) != wire.CauseInconsistentPolicy {
		t.Fatalf("inconsistent policy: %+v", r)
	}
	// Only the registering connection may deregister a PE (0xa otherwise).
	other := dial(t, h.addr)
	other.send(&wire.Deregistration{PoolHandle: "P", ID: 1})
	if d := expect[*wire.DeregistrationResponse](t, other); cause(d.Error) != wire.CauseRejectedSecurity {
		t.Fatalf("deregistration from another connection: %+v", d)
	}
	// Deregistration, also of an unknown PE, is answered without error.
	pe.send(&wire.Deregistration{PoolHandle: "P", ID: 1})
	if d := expect[*wire.DeregistrationResponse](t, pe); d.Error != nil || d.ID != 1 {
		t.Fatalf("deregistration response %+v", d)
	}
	h.waitChange(t, wire.ActionDelPE, 1, time.Second)
	pe.send(&wire.Deregistration{PoolHandle: "P", ID: 99})
	if d := expect[*wire.DeregistrationResponse](t, pe); d.Error != nil {
		t.Fatalf("unknown PE deregistration %+v", d)
	}
}

func TestUnreachableThreshold(t *testing.T) {
	h := start(t, testConfig())
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	pe.register(regMsg("U", 7, 7000, wire.PolicyRoundRobin))
	pe.register(regMsg("U", 8, 7001, wire.PolicyRoundRobin))
	pu := dial(t, h.addr)
	for i := 0; i < 2; i++ {
		pu.send(&wire.EndpointUnreachable{PoolHandle: "U", ID: 7})
	}
	// Two reports: still there (a resolution is ordered after them on the loop).
	if hr := pu.resolve("U", 10); len(hr.Elements) != 2 {
		t.Fatalf("after 2 reports: %d PEs", len(hr.Elements))
	}
	pu.send(&wire.EndpointUnreachable{PoolHandle: "U", ID: 7})
	h.waitChange(t, wire.ActionDelPE, 7, time.Second)
	hr := pu.resolve("U", 10)
	if len(hr.Elements) != 1 || hr.Elements[0].ID != 8 {
		t.Fatalf("after threshold: %+v", hr.Elements)
	}
	// Reports for unknown PEs are ignored.
	pu.send(&wire.EndpointUnreachable{PoolHandle: "nope", ID: 1})
	if v := testutil.ToFloat64(h.r.m.removals.WithLabelValues(reasonUnreachable)); v != 1 {
		t.Errorf("unreachable removals = %v", v)
	}
}

func TestConnectionLossRemovesPEs(t *testing.T) {
	h := start(t, testConfig())
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	pe.register(regMsg("C", 1, 7000, wire.PolicyRoundRobin))
	pe.register(regMsg("C", 2, 7001, wire.PolicyRoundRobin))
	pe.close()
	h.waitChange(t, wire.ActionDelPE, 1, 2*time.Second)
	if hr := dial(t, h.addr).resolve("C", 0); cause(hr.Error) != wire.CauseUnknownPoolHandle {
		t.Fatalf("PEs survive their connection: %+v", hr)
	}
}

func TestAddressRules(t *testing.T) {
	cfg := testConfig()
	h := start(t, cfg)
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)

	// Not an address of the connection: 0xa.
	r := regMsg("A", 1, 7000, wire.PolicyRoundRobin)
	r.Element.User.Addrs = []netip.Addr{netip.MustParseAddr("10.9.8.7")}
	if resp := pe.register(r); !resp.Reject || cause(resp.Error) != wire.CauseRejectedSecurity {
		t.Fatalf("foreign address: %+v", resp)
	}
	// 0.0.0.0 stands for the connection's address.
	r = regMsg("A", 2, 7000, wire.PolicyRoundRobin)
	r.Element.User.Addrs = []netip.Addr{netip.IPv4Unspecified()}
	if resp := pe.register(r); resp.Reject {
		t.Fatalf("wildcard: %+v", resp.Error)
	}
	hr := dial(t, h.addr).resolve("A", 0)
	if len(hr.Elements) != 1 || hr.Elements[0].User.Addrs[0] != loopback {
		t.Fatalf("wildcard not substituted: %+v", hr.Elements)
	}
	// Port 0: 0x3.
	r = regMsg("A", 3, 0, wire.PolicyRoundRobin)
	if resp := pe.register(r); !resp.Reject || cause(resp.Error) != wire.CauseInvalidValues {
		t.Fatalf("port 0: %+v", resp)
	}

	// With the subset rule off, foreign addresses are accepted.
	cfg.Registration.RequireAddressSubset = false
	if err := h.r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	r = regMsg("A", 4, 7000, wire.PolicyRoundRobin)
	r.Element.User.Addrs = []netip.Addr{netip.MustParseAddr("10.9.8.7")}
	if resp := pe.register(r); resp.Reject {
		t.Fatalf("foreign address with require_address_subset=false: %+v", resp.Error)
	}
}

func TestLimits(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxPools = 3
	cfg.Limits.MaxElements = 10
	cfg.Limits.MaxPoolElements = 4
	cfg.Limits.MaxHandleLength = 8
	cfg.Limits.MaxConnections = 4
	cfg.Pools = []PoolConfig{
		{Handle: "denied", Allow: []string{"10.0.0.0/8"}},
		{Handle: "small", MaxElements: 2},
	}
	h := start(t, cfg)
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	check := func(name string, r *wire.Registration, want wire.CauseCode) {
		t.Helper()
		resp := pe.register(r)
		if want == 0 {
			if resp.Reject {
				t.Fatalf("%s: rejected with %v", name, resp.Error)
			}
			return
		}
		if !resp.Reject || cause(resp.Error) != want {
			t.Fatalf("%s: got reject=%v cause %v, want %v", name, resp.Reject, cause(resp.Error), want)
		}
	}
	check("handle too long", regMsg("123456789", 1, 7000, wire.PolicyRoundRobin), wire.CauseInvalidValues)
	check("cidr", regMsg("denied", 1, 7000, wire.PolicyRoundRobin), wire.CauseRejectedSecurity)
	check("small 1", regMsg("small", 1, 7000, wire.PolicyRoundRobin), 0)
	check("small 2", regMsg("small", 2, 7000, wire.PolicyRoundRobin), 0)
	check("small cap", regMsg("small", 3, 7000, wire.PolicyRoundRobin), wire.CauseLackOfResources)
	check("small re-registration at cap", regMsg("small", 2, 7001, wire.PolicyRoundRobin), 0)
	for i := uint32(1); i <= 4; i++ {
		check("big", regMsg("big", i, 7000, wire.PolicyRoundRobin), 0)
	}
	check("pool cap", regMsg("big", 5, 7000, wire.PolicyRoundRobin), wire.CauseLackOfResources)
	check("third pool", regMsg("p3", 1, 7000, wire.PolicyRoundRobin), 0)
	check("max pools", regMsg("p4", 1, 7000, wire.PolicyRoundRobin), wire.CauseLackOfResources)
	for i := uint32(2); i <= 4; i++ {
		check("p3", regMsg("p3", i, 7000, wire.PolicyRoundRobin), 0)
	}
	check("max elements", regMsg("small", 9, 7000, wire.PolicyRoundRobin), wire.CauseLackOfResources)
	if n := h.numElements(t); n != 10 {
		t.Errorf("elements = %d, want the cap 10", n)
	}
	for _, l := range []string{limitHandleLength, limitAuthz, limitPoolElements, limitPools, limitElements} {
		if v := testutil.ToFloat64(h.r.m.limitRejections.WithLabelValues(l)); v < 1 {
			t.Errorf("limit_rejections_total{limit=%q} = %v", l, v)
		}
	}

	// Connections: 4 allowed (pe + 3); the fifth is closed at once.
	extra := []*client{dial(t, h.addr), dial(t, h.addr), dial(t, h.addr)}
	for _, c := range extra {
		c.resolve("big", 0) // all accepted and served
	}
	if !refused(t, h.addr, 3*time.Second) {
		t.Fatal("connection beyond max_connections stays open")
	}
	pe.resolve("big", 0) // existing clients still served
}

func TestRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MessagesPerSecond = 1
	cfg.Limits.Burst = 5
	h := start(t, cfg)
	pu := dial(t, h.addr)
	for i := 0; i < 20; i++ {
		pu.send(&wire.HandleResolution{PoolHandle: "x"})
	}
	lack := 0
	for i := 0; i < 20; i++ {
		hr := expect[*wire.HandleResolutionResponse](t, pu)
		if cause(hr.Error) == wire.CauseLackOfResources {
			lack++
		}
	}
	if lack < 14 || lack > 15 {
		t.Errorf("%d of 20 resolutions limited, want 15 (burst 5)", lack)
	}
	if v := testutil.ToFloat64(h.r.m.limitRejections.WithLabelValues(limitRate)); v != float64(lack) {
		t.Errorf("rate metric %v, want %d", v, lack)
	}
}

func TestMalformedMessages(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxErrors = 5
	h := start(t, cfg)
	pu := dial(t, h.addr)

	// Unknown message type 0x40 (bits 01): cause 0x2 with the message.
	unknown := []byte{0x40, 0, 0, 8, 1, 2, 3, 4}
	pu.sendRaw(unknown)
	e := expect[*wire.ASAPError](t, pu)
	if cause(&e.Error) != wire.CauseUnrecognizedMessage || string(e.Error.Causes[0].Info) != string(unknown) {
		t.Fatalf("unknown type: %+v", e.Error)
	}
	// Unknown type with bits 00: silently dropped; garbage length: an error.
	pu.sendRaw([]byte{0x30, 0, 0, 4})
	pu.sendRaw([]byte{0x05, 0, 0xff, 0xff, 0, 9})
	e = expect[*wire.ASAPError](t, pu)
	if len(e.Error.Causes) != 1 {
		t.Fatalf("garbage: %+v", e.Error)
	}
	// A message a registrar never receives: 0x2.
	b, _ := (&wire.RegistrationResponse{PoolHandle: "x", ID: 1}).AppendBinary(nil)
	pu.sendRaw(b)
	if e := expect[*wire.ASAPError](t, pu); cause(&e.Error) != wire.CauseUnrecognizedMessage {
		t.Fatalf("unexpected message: %+v", e.Error)
	}
	// An ASAP_ERROR is never answered; the connection is still usable.
	b, _ = (&wire.ASAPError{Error: wire.OperationError{Causes: []wire.ErrorCause{{Code: 1}}}}).AppendBinary(nil)
	pu.sendRaw(b)
	if hr := pu.resolve("none", 0); cause(hr.Error) != wire.CauseUnknownPoolHandle {
		t.Fatalf("after errors: %+v", hr)
	}
	// More bad messages reach max_errors (5): closed. The registrar may close
	// after the first of these, so the second write is allowed to fail.
	pu.sendRaw([]byte{0x40, 0, 0, 4})
	_ = pu.c.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: []byte{0x40, 0, 0, 4}})
	if !pu.waitClosed(3 * time.Second) {
		t.Fatal("connection not closed after max_errors")
	}
	if v := testutil.ToFloat64(h.r.m.malformed); v < 5 {
		t.Errorf("malformed metric %v", v)
	}
}

func TestOversizeFrameClosesConnection(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxMessageSize = 1024
	h := start(t, cfg)
	good := dial(t, h.addr)
	bad := dial(t, h.addr)
	// The transport refuses to send a message larger than its own limit, so
	// send a big message that our client allows: 4000 bytes.
	big := make([]byte, 4000)
	big[0], big[2], big[3] = 0x05, 0x0f, 0xa0
	bad.sendRaw(big)
	if !bad.waitClosed(3 * time.Second) {
		t.Fatal("oversize frame did not close the connection")
	}
	if hr := good.resolve("x", 0); cause(hr.Error) != wire.CauseUnknownPoolHandle {
		t.Fatalf("well-behaved client: %+v", hr)
	}
}

func TestRegistrationFloodOnePool(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxPoolElements = 500
	cfg.Timers.KeepAliveInterval = time.Minute
	h := start(t, cfg)
	const clients, each = 4, 400
	done := make(chan int, clients)
	for c := 0; c < clients; c++ {
		cl := dial(t, h.addr)
		go func(c int, cl *client) {
			ok := 0
			for i := 0; i < each; i++ {
				if err := cl.sendNoFail(regMsg("flood", uint32(c*each+i+1), 7000, wire.PolicyRoundRobin)); err != nil {
					done <- -1
					return
				}
			}
			for i := 0; i < each; i++ {
				select {
				case m := <-cl.msgs:
					if r, isResp := m.(*wire.RegistrationResponse); isResp && !r.Reject {
						ok++
					}
				case <-time.After(10 * time.Second):
					done <- -1
					return
				}
			}
			done <- ok
		}(c, cl)
	}
	total := 0
	for c := 0; c < clients; c++ {
		n := <-done
		if n < 0 {
			t.Fatal("flood client failed")
		}
		total += n
	}
	if total != 500 {
		t.Errorf("%d registrations accepted, want the pool cap 500", total)
	}
	if n := h.numElements(t); n != 500 {
		t.Errorf("pool holds %d", n)
	}
	if hr := dial(t, h.addr).resolve("flood", 5); len(hr.Elements) != 5 {
		t.Errorf("resolution during flood aftermath: %d PEs", len(hr.Elements))
	}
}

func TestAdminEndpoints(t *testing.T) {
	h := start(t, testConfig())
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	pe.register(regMsg("EchoPool", 0xabc, 7001, wire.PolicyRoundRobin))
	base := "http://" + h.r.AdminAddr()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	code, body := get("/metrics")
	for _, name := range []string{"rserpool_registrar_pool_elements{pool=\"EchoPool\"} 1",
		"rserpool_registrar_registrations_total{result=\"ok\"} 1",
		"rserpool_registrar_handle_resolutions_total", "rserpool_registrar_peers 0"} {
		if code != 200 || !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
	code, body = get("/handlespace")
	var s Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil || code != 200 {
		t.Fatalf("/handlespace: %d %v", code, err)
	}
	if len(s.Pools) != 1 || s.Pools[0].Handle != "EchoPool" || len(s.Pools[0].Elements) != 1 ||
		s.Pools[0].Elements[0].ID != "0x00000abc" || !s.Pools[0].Elements[0].Owned ||
		s.Pools[0].Elements[0].Addrs[0] != "127.0.0.1" || len(s.Checksums) != 1 {
		t.Errorf("/handlespace = %s", body)
	}
}

func TestPoolLabelCap(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MetricPools = 2
	h := start(t, cfg)
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	for _, p := range []string{"a", "b", "c", "d"} {
		pe.register(regMsg(p, 1, 7000, wire.PolicyRoundRobin))
	}
	if n := testutil.CollectAndCount(h.r.m.poolGauge); n != 3 {
		t.Errorf("%d pool label values, want 2 + _other", n)
	}
	if v := testutil.ToFloat64(h.r.m.poolElements.WithLabelValues(otherPool)); v != 2 {
		t.Errorf("_other = %v", v)
	}
}

func TestClientThatNeverReads(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.SendQueueBytes = 64 << 10
	h := start(t, cfg)
	pe := dial(t, h.addr)
	pe.autoAck.Store(true)
	for i := uint32(1); i <= 50; i++ {
		pe.register(regMsg("R", i, 7000, wire.PolicyRoundRobin))
	}
	// A raw connection that pipelines large resolutions and never reads.
	bad, err := transport.Dial(context.Background(), transport.MustParseAddr(h.addr), &transport.Config{HeartbeatInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	req, _ := (&wire.HandleResolution{PoolHandle: "R", HasItems: true, Items: 50}).AppendBinary(nil)
	sent := make(chan int, 1)
	go func() {
		n := 0
		for ; n < 20000; n++ {
			if bad.WriteMessage(transport.Message{PPID: wire.PPIDASAP, Data: req}) != nil {
				break
			}
		}
		sent <- n
	}()
	good := dial(t, h.addr)
	for i := 0; i < 50; i++ {
		if hr := good.resolve("R", 3); len(hr.Elements) != 3 {
			t.Fatalf("well-behaved client not served: %+v", hr)
		}
	}
	bad.Close()
	<-sent
}

func TestUnrecognizedParameters(t *testing.T) {
	h := start(t, testConfig())
	pu := dial(t, h.addr)
	hr, _ := (&wire.HandleResolution{PoolHandle: "none"}).AppendBinary(nil)
	withParam := func(typ uint16) ([]byte, []byte) {
		tlv := []byte{byte(typ >> 8), byte(typ), 0, 8, 1, 2, 3, 4}
		b := append(append([]byte(nil), hr...), tlv...)
		n := len(b)
		b[2], b[3] = byte(n>>8), byte(n)
		return b, tlv
	}
	// Skip and report (bits 11): the message is processed and the TLV reported.
	b, tlv := withParam(0xc123)
	pu.sendRaw(b)
	var gotErr, gotResp bool
	for i := 0; i < 2; i++ {
		switch m := pu.recv(5 * time.Second).(type) {
		case *wire.ASAPError:
			if cause(&m.Error) != wire.CauseUnrecognizedParameter || string(m.Error.Causes[0].Info) != string(tlv) {
				t.Fatalf("report %+v", m.Error)
			}
			gotErr = true
		case *wire.HandleResolutionResponse:
			gotResp = true
		}
	}
	if !gotErr || !gotResp {
		t.Fatalf("skip+report: error %v, response %v", gotErr, gotResp)
	}
	// Stop and report (bits 01): only the report.
	b, tlv = withParam(0x4123)
	pu.sendRaw(b)
	e := expect[*wire.ASAPError](t, pu)
	if cause(&e.Error) != wire.CauseUnrecognizedParameter || string(e.Error.Causes[0].Info) != string(tlv) {
		t.Fatalf("stop+report %+v", e.Error)
	}
	// Skip silently (bits 10): just the response.
	b, _ = withParam(0x8123)
	pu.sendRaw(b)
	expect[*wire.HandleResolutionResponse](t, pu)
}
