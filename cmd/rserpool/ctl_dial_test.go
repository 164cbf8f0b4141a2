package main

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/pucache/pucachetest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestCtlDial: ctl dial resolves a pool, connects to its PE and exchanges
// a line; a pool without a reachable PE fails.
func TestCtlDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("echo:" + line))
			}()
		}
	}()
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, ln.Addr().(*net.TCPAddr).AddrPort(), wire.PolicyRoundRobin, 0))
	var out bytes.Buffer
	if err := dialOnce(&out, []transport.Addr{r.Addr()}, "", "", "P", "hello", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "a PE of \"P\"") || !strings.HasSuffix(out.String(), "echo:hello\n") {
		t.Fatalf("output %q", out.String())
	}
	if err := dialOnce(&out, []transport.Addr{r.Addr()}, "", "", "missing", "", 5*time.Second); err == nil {
		t.Fatal("dialed a pool the registrar does not know")
	}
}
