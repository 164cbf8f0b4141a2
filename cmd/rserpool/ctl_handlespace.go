package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ishidawataru/sctp"
	"github.com/rserpool/rserpool/regclient"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func init() {
	registerCtl(command{name: "handlespace", summary: "a registrar's whole handlespace over ENRP, with owner checksums", run: runCtlHandlespace})
}

// hsDump is the -json form of a handlespace.
type hsDump struct {
	Registrar string        `json:"registrar"` // server ID of the answering registrar
	Pools     []hsPool      `json:"pools"`
	Elements  int           `json:"elements"`
	Checksums []hsOwnerCsum `json:"checksums"`
}

type hsPool struct {
	Handle   wire.PoolHandle `json:"handle"`
	Policy   string          `json:"policy"`
	Elements []resolvedPE    `json:"elements"`
}

type hsOwnerCsum struct {
	Owner    string `json:"owner"`
	Elements int    `json:"elements"`
	Checksum string `json:"checksum"`
}

func runCtlHandlespace(args []string) int {
	fs := flag.NewFlagSet("ctl handlespace", flag.ContinueOnError)
	var addr transport.Addr
	fs.TextVar(&addr, "registrar", transport.Addr{}, "registrar ENRP `addr` (tcp://h:p, sctp://h:p, tls://h:p; required)")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: rserpool ctl handlespace -registrar ADDR [-json]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if addr.IsZero() || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	d, err := fetchHandlespace(addr, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool ctl handlespace:", err)
		return 1
	}
	if err := printHandlespace(os.Stdout, d, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "rserpool ctl handlespace:", err)
		return 1
	}
	return 0
}

// fetchHandlespace downloads the handlespace as RSPLIB's hsdump does:
// ENRP_HANDLE_TABLE_REQUEST (W=0) from a random server ID, repeated while
// the response has M=1. Checksums are computed from what arrived.
func fetchHandlespace(addr transport.Addr, timeout time.Duration) (*hsDump, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := ctlClient(addr, timeout)
	if err := c.Start(); err != nil {
		return nil, err
	}
	defer c.Close()

	var b [4]byte
	var id uint32
	for id == 0 {
		_, _ = rand.Read(b[:])
		id = binary.BigEndian.Uint32(b[:])
	}
	d := &hsDump{Pools: []hsPool{}, Checksums: []hsOwnerCsum{}}
	pools := map[wire.PoolHandle]int{}
	seen := map[wire.PoolHandle]map[uint32]bool{}
	sums := map[uint32]wire.ChecksumSum{}
	counts := map[uint32]int{}
	const maxChunks = 1 << 20 // bounds a registrar that never clears M
	announced := false
	for chunk := 0; ; chunk++ {
		if chunk == maxChunks {
			return nil, errors.New("more than 1,048,576 Handle Table Responses; giving up")
		}
		m, err := c.Request(ctx, &wire.HandleTableRequest{Sender: id})
		var reply *regclient.ErrorReply
		switch {
		case errors.As(err, &reply):
			return nil, fmt.Errorf("registrar answered with ENRP_ERROR %+v", reply.Causes)
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, regclient.ErrTimeout):
			return nil, fmt.Errorf("no complete answer within %v", timeout)
		case err != nil:
			return nil, err
		}
		resp, ok := m.(*wire.HandleTableResponse)
		if !ok {
			return nil, fmt.Errorf("unexpected answer %T", m)
		}
		if resp.Reject && !announced && chunk == 0 {
			// RSPLIB answers Handle Table Requests only from servers in its
			// peer list (R=1 otherwise). Introduce this tool with a Presence,
			// as hsdump does, and ask again.
			announced = true
			pres := &wire.Presence{Sender: id, Info: &wire.ServerInfo{ServerID: id, Transport: localTransport(c.LocalAddr())}}
			if err := c.Send(ctx, pres); err != nil {
				return nil, err
			}
			chunk--
			continue
		}
		if resp.Reject {
			return nil, errors.New("the registrar rejected the Handle Table Request")
		}
		d.Registrar = fmt.Sprintf("0x%08x", resp.Sender)
		for _, pe := range resp.Pools {
			i, ok := pools[pe.PoolHandle]
			if !ok {
				i = len(d.Pools)
				pools[pe.PoolHandle] = i
				seen[pe.PoolHandle] = map[uint32]bool{}
				d.Pools = append(d.Pools, hsPool{Handle: pe.PoolHandle})
			}
			for _, e := range pe.Elements {
				if seen[pe.PoolHandle][e.ID] {
					continue // repeated across chunks
				}
				seen[pe.PoolHandle][e.ID] = true
				if d.Pools[i].Policy == "" {
					d.Pools[i].Policy = e.Policy.Type.Name()
				}
				d.Pools[i].Elements = append(d.Pools[i].Elements, peJSON(e))
				sums[e.HomeServer] = sums[e.HomeServer].Add(wire.PEChecksumPart(pe.PoolHandle, e.ID))
				counts[e.HomeServer]++
				d.Elements++
			}
		}
		if !resp.More {
			break
		}
	}
	owners := make([]uint32, 0, len(sums))
	for o := range sums {
		owners = append(owners, o)
	}
	slices.Sort(owners)
	for _, o := range owners {
		d.Checksums = append(d.Checksums, hsOwnerCsum{Owner: fmt.Sprintf("0x%08x", o),
			Elements: counts[o], Checksum: fmt.Sprintf("0x%04x", sums[o].Checksum())})
	}
	slices.SortFunc(d.Pools, func(a, b hsPool) int { return strings.Compare(string(a.Handle), string(b.Handle)) })
	for _, p := range d.Pools {
		slices.SortFunc(p.Elements, func(a, b resolvedPE) int { return strings.Compare(a.ID, b.ID) })
	}
	return d, nil
}

// localTransport describes the local end of c for a Server Information
// parameter: every address of an SCTP association, the address of a TCP one.
func localTransport(a net.Addr) wire.Transport {
	switch a := a.(type) {
	case *sctp.SCTPAddr:
		t := wire.Transport{Type: wire.TransportSCTP, Port: uint16(a.Port)}
		for _, ip := range a.IPAddrs {
			if x, ok := netip.AddrFromSlice(ip.IP); ok {
				t.Addrs = append(t.Addrs, x.Unmap())
			}
		}
		return t
	case *net.TCPAddr:
		x, _ := netip.AddrFromSlice(a.IP)
		return wire.Transport{Type: wire.TransportTCP, Port: uint16(a.Port), Addrs: []netip.Addr{x.Unmap()}}
	}
	return wire.Transport{Type: wire.TransportSCTP}
}

func peJSON(e wire.PoolElement) resolvedPE {
	r := resolvedPE{
		ID: fmt.Sprintf("0x%08x", e.ID), Home: fmt.Sprintf("0x%08x", e.HomeServer),
		Transport: e.User.Type.String(), Port: e.User.Port, Use: e.User.Use.String(),
		Addrs: make([]string, len(e.User.Addrs)), Policy: e.Policy.Type.Name(),
		Weight: e.Policy.Weight, Priority: e.Policy.Priority, Load: e.Policy.Load, LifeMS: e.RegistrationLife,
	}
	for i, a := range e.User.Addrs {
		r.Addrs[i] = a.String()
	}
	return r
}

func printHandlespace(w io.Writer, d *hsDump, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(d)
	}
	fmt.Fprintf(w, "registrar %s: %d pools, %d PEs\n", d.Registrar, len(d.Pools), d.Elements)
	for _, p := range d.Pools {
		fmt.Fprintf(w, "pool %q policy %s, %d PEs\n", p.Handle, p.Policy, len(p.Elements))
		for _, e := range p.Elements {
			pol := e.Policy
			if e.Weight != 0 {
				pol += fmt.Sprintf(" weight %d", e.Weight)
			}
			if e.Load != 0 {
				pol += fmt.Sprintf(" load %d", e.Load)
			}
			if e.Priority != 0 {
				pol += fmt.Sprintf(" priority %d", e.Priority)
			}
			fmt.Fprintf(w, "  PE %s  %s %s port %d  %s  home %s\n", e.ID, e.Transport,
				strings.Join(e.Addrs, ","), e.Port, pol, e.Home)
		}
	}
	fmt.Fprintln(w, "owner checksums:")
	for _, c := range d.Checksums {
		fmt.Fprintf(w, "  %s  %d PEs  checksum %s\n", c.Owner, c.Elements, c.Checksum)
	}
	return nil
}
