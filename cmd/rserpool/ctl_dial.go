package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

func init() {
	registerCtl(command{name: "dial", summary: "connect to a pool element the way a pool user does (pucache.Cache.Dial)", run: runCtlDial})
}

func runCtlDial(args []string) int {
	fs := flag.NewFlagSet("ctl dial", flag.ContinueOnError)
	var registrars addrList
	fs.Var(&registrars, "registrar", "registrar ASAP `addr` (tcp://, sctp://, tls://); repeatable")
	announce := fs.String("announce", "", "learn registrars from ASAP Server Announces on this multicast `group` (e.g. 239.0.0.50:3863)")
	iface := fs.String("interface", "", "`interface` for -announce (default: the routing table's)")
	send := fs.String("send", "", "write this `text` and a newline, then print what comes back")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: rserpool ctl dial [-registrar ADDR]... [-announce GROUP] [-send TEXT] HANDLE")
		fmt.Fprintln(fs.Output(), "Resolves HANDLE, selects a PE by the pool's policy and connects to its user transport (TCP or SCTP),")
		fmt.Fprintln(fs.Output(), `failing over to another PE. HANDLE: \xHH stands for a byte, \\ for a backslash.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if (len(registrars) == 0 && *announce == "") || fs.NArg() != 1 || fs.Arg(0) == "" {
		fs.Usage()
		return 2
	}
	handle, err := wire.ParsePoolHandle(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "rserpool ctl dial: HANDLE:", err)
		return 2
	}
	if err := dialOnce(os.Stdout, registrars, *announce, *iface, handle, *send, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "rserpool ctl dial:", err)
		return 1
	}
	return 0
}

// dialOnce connects to a PE of handle with a fresh cache, reports which
// one, and with send exchanges one line with it.
func dialOnce(out io.Writer, registrars []transport.Addr, group, iface string, handle wire.PoolHandle, send string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := pucache.New(pucache.Config{Registrars: registrars, AnnounceGroup: group, AnnounceInterface: iface,
		ConnectTimeout: min(timeout, 5*time.Second)}, pucache.Options{})
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	defer c.Close()
	var conn net.Conn
	for conn == nil {
		conn, err = c.Dial(ctx, handle)
		switch {
		case err == nil:
		case group != "" && ctx.Err() == nil && errors.Is(err, pucache.ErrNoRegistrar):
			// No announce heard yet: registrars announce about once a second.
			if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
				return fmt.Errorf("no registrar announced on %s within %v", group, timeout)
			}
		default:
			return err
		}
	}
	defer conn.Close()
	fmt.Fprintf(out, "connected to %s, a PE of %q\n", conn.RemoteAddr(), handle)
	if send == "" {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, send+"\n"); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if n > 0 {
		_, werr := out.Write(buf[:n])
		return werr
	}
	if ctx.Err() != nil {
		return fmt.Errorf("no answer within %v", timeout)
	}
	return err
}

// sleepCtx waits d or until ctx ends (then it returns ctx's error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
