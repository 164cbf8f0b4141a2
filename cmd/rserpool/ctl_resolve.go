package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rserpool/rserpool/regclient"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func init() {
	registerCtl(command{name: "resolve", summary: "one handle resolution at a registrar; prints the PEs", run: runCtlResolve})
}

// resolvedPE is the -json form of one PE.
type resolvedPE struct {
	ID        string   `json:"id"`
	Home      string   `json:"home"`
	Transport string   `json:"transport"`
	Addrs     []string `json:"addrs"`
	Port      uint16   `json:"port"`
	Use       string   `json:"use"`
	Policy    string   `json:"policy"`
	Weight    uint32   `json:"weight,omitempty"`
	Priority  uint32   `json:"priority,omitempty"`
	Load      uint32   `json:"load,omitempty"`
	LifeMS    uint32   `json:"registration_life_ms"`
}

func runCtlResolve(args []string) int {
	fs := flag.NewFlagSet("ctl resolve", flag.ContinueOnError)
	var addr transport.Addr
	fs.TextVar(&addr, "registrar", transport.Addr{}, "registrar ASAP `addr` (tcp://h:p, sctp://h:p, tls://h:p; required)")
	asJSON := fs.Bool("json", false, "print JSON")
	items := fs.Uint("items", 0, "PEs wanted (RSPLIB Handle Resolution Option; 0 = the registrar's default)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: rserpool ctl resolve -registrar ADDR [-json] [-items N] HANDLE")
		fmt.Fprintln(fs.Output(), `HANDLE is the pool handle; \xHH stands for a byte, \\ for a backslash.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if addr.IsZero() || fs.NArg() != 1 || fs.Arg(0) == "" {
		fs.Usage()
		return 2
	}
	handle, err := wire.ParsePoolHandle(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool ctl resolve: HANDLE:", err)
		return 2
	}
	resp, err := resolveOnce(addr, handle, uint32(*items), *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool ctl resolve:", err)
		return 1
	}
	if err := printResolution(os.Stdout, resp, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "rserpool ctl resolve:", err)
		return 1
	}
	if resp.Error != nil {
		return 1
	}
	return 0
}

// resolveOnce sends one ASAP_HANDLE_RESOLUTION and waits for its response.
func resolveOnce(addr transport.Addr, handle wire.PoolHandle, items uint32, timeout time.Duration) (*wire.HandleResolutionResponse, error) {
	c := ctlClient(addr, timeout)
	if err := c.Start(); err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := c.Request(ctx, &wire.HandleResolution{PoolHandle: handle, HasItems: items != 0, Items: items})
	var reply *regclient.ErrorReply
	switch {
	case errors.As(err, &reply):
		return nil, fmt.Errorf("registrar answered ASAP_ERROR: %v", causes(&wire.OperationError{Causes: reply.Causes}))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, regclient.ErrTimeout):
		return nil, fmt.Errorf("no answer from %s within %v", addr, timeout)
	case err != nil:
		return nil, err
	}
	resp, ok := m.(*wire.HandleResolutionResponse)
	if !ok {
		return nil, fmt.Errorf("unexpected answer %T", m)
	}
	return resp, nil
}

// ctlClient is a registrar client for one request-response exchange with
// addr: one attempt, no re-send, everything within timeout.
func ctlClient(addr transport.Addr, timeout time.Duration) *regclient.Client {
	return regclient.New(regclient.Config{
		Registrars:     []transport.Addr{addr},
		Transport:      &transport.Config{},
		ConnectTimeout: timeout,
		RequestTimeout: timeout,
		MaxRetransmit:  -1,
		Parallel:       1,
		MaxLearned:     -1,
	})
}

func causes(e *wire.OperationError) string {
	s := ""
	for i, c := range e.Causes {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s (0x%04x)", c.Code, uint16(c.Code))
	}
	return s
}

func printResolution(w io.Writer, r *wire.HandleResolutionResponse, asJSON bool) error {
	pes := make([]resolvedPE, 0, len(r.Elements))
	for _, e := range r.Elements {
		p := resolvedPE{ID: fmt.Sprintf("0x%08x", e.ID), Home: fmt.Sprintf("0x%08x", e.HomeServer),
			Transport: e.User.Type.String(), Port: e.User.Port, Use: e.User.Use.String(),
			Policy: e.Policy.Type.Name(), Weight: e.Policy.Weight, Priority: e.Policy.Priority,
			Load: e.Policy.Load, LifeMS: e.RegistrationLife, Addrs: []string{}}
		for _, a := range e.User.Addrs {
			p.Addrs = append(p.Addrs, a.String())
		}
		pes = append(pes, p)
	}
	if asJSON {
		out := struct {
			Handle   wire.PoolHandle `json:"handle"`
			Policy   string          `json:"policy,omitempty"`
			Error    string          `json:"error,omitempty"`
			Elements []resolvedPE    `json:"elements"`
		}{Handle: r.PoolHandle, Elements: pes}
		if r.Policy != nil {
			out.Policy = r.Policy.Type.Name()
		}
		if r.Error != nil {
			out.Error = causes(r.Error)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if r.Error != nil {
		_, err := fmt.Fprintf(w, "pool %q: %s\n", r.PoolHandle, causes(r.Error))
		return err
	}
	pol := "round-robin"
	if r.Policy != nil {
		pol = r.Policy.Type.Name()
	}
	fmt.Fprintf(w, "pool %q policy %s, %d PE(s)\n", r.PoolHandle, pol, len(pes))
	for _, p := range pes {
		fmt.Fprintf(w, "  %s  %s %v port %d  policy %s", p.ID, p.Transport, p.Addrs, p.Port, p.Policy)
		if p.Weight != 0 {
			fmt.Fprintf(w, " weight %d", p.Weight)
		}
		if p.Priority != 0 {
			fmt.Fprintf(w, " priority %d", p.Priority)
		}
		if p.Load != 0 {
			fmt.Fprintf(w, " load %d", p.Load)
		}
		_, err := fmt.Fprintf(w, "  home %s\n", p.Home)
		if err != nil {
			return err
		}
	}
	return nil
}
