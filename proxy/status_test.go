package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rserpool/rserpool/proxy"
	"github.com/rserpool/rserpool/pucache/pucachetest"
	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// TestStatusPage: the page at / shows the listeners with their active
// connections and failovers, the cache's pools (fresh, which registrar
// answered) and per PE the connections and failures, with a pool handle
// that is not printable in its escaped form.
func TestStatusPage(t *testing.T) {
	bs := []*backend{startBackend(t, "a", nil), startBackend(t, "b", nil), startBackend(t, "c", nil)}
	r := pucachetest.Start(t)
	const odd = wire.PoolHandle("W\x00\xff<i>")
	var pes []wire.PoolElement
	for i, b := range bs {
		pes = append(pes, pucachetest.PE(uint32(i+1), b.addr(), wire.PolicyRoundRobin, 1))
	}
	r.SetPool("P", wire.PolicyRoundRobin, pes...)
	r.SetPool(odd, wire.PolicyRoundRobin, pucachetest.PE(9, bs[0].addr(), wire.PolicyRoundRobin, 1))
	web, other := transport.MustParseAddr("127.0.0.1:0"), transport.MustParseAddr("127.0.0.2:0")
	p, err := proxy.New(&proxy.Config{
		Registrars: []transport.Addr{r.Addr()}, Admin: "127.0.0.1:0",
		Listeners: []proxy.ListenerConfig{{Name: "web", Listen: web, Pool: "P"}, {Name: "odd", Listen: other, Pool: odd}},
	}, proxy.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	addr := p.Addr(web).String()

	bs[1].stop() // PE 2 dies: connections fail over
	for i := range 9 {
		if _, err := ask(t, addr, "x"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if got, err := ask(t, p.Addr(other).String(), "y"); err != nil || got != "a:y" {
		t.Fatalf("odd listener: %q %v", got, err)
	}
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	io.WriteString(held, "held\n")
	if _, err := bufio.NewReader(held).ReadString('\n'); err != nil {
		t.Fatal(err)
	}

	// The connections of ask end on the proxy's side soon after the
	// client's: wait until only the held one is active.
	page := func() string {
		resp, err := http.Get("http://" + p.AdminAddr() + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET / = %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	webRow := regexp.MustCompile(`(?s)<td>web</td>.*?</tr>`)
	numCell := regexp.MustCompile(`<td class="num">(.*?)</td>`)
	var body string
	var cells [][]string
	waitFor(t, func() bool {
		body = page()
		cells = numCell.FindAllStringSubmatch(webRow.FindString(body), -1)
		return len(cells) > 0 && strings.HasPrefix(cells[0][1], "1 ")
	})
	for _, want := range []string{
		"<title>2 listeners · rserpool</title>",
		`<td>web</td>`, `<td>odd</td>`, `<code class="handle">W\x00\xff&lt;i&gt;</code>`,
		`<span class="badge ok">fresh</span>`, "by <code>" + r.Addr().String() + "</code>",
		"0x00000001", "0x00000003", "0x00000009", "connection refused",
		`<span class="badge muted">not cached</span>`, // PE 2, held down after its failure
	} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(body, "<i>") {
		t.Error("status page holds the handle's raw bytes")
	}
	// The web listener: one connection active, ten relayed, failovers.
	if len(cells) < 5 || cells[4][1] != "10" || !strings.Contains(cells[2][1], `class="warn"`) {
		t.Errorf("web listener row: %s", webRow.FindString(body))
	}
	// PE 2's row counts its failures; the live PEs their connections.
	pe2 := regexp.MustCompile(`(?s)0x00000002</code>.*?</tr>`).FindString(body)
	if !strings.Contains(pe2, `<span class="bad">`) {
		t.Errorf("PE 2 row: %s", pe2)
	}
	pe1 := regexp.MustCompile(`(?s)0x00000001</code>.*?</tr>`).FindString(body)
	if c := regexp.MustCompile(`<td class="num">([0-9]+)</td>`).FindStringSubmatch(pe1); c == nil || c[1] == "0" { // connections
		t.Errorf("PE 1 row: %s", pe1)
	}
}

// TestStatusPageDraining: while draining the page says so.
func TestStatusPageDraining(t *testing.T) {
	b := startBackend(t, "a", nil)
	r := pucachetest.Start(t)
	r.SetPool("P", wire.PolicyRoundRobin, pucachetest.PE(1, b.addr(), wire.PolicyRoundRobin, 1))
	p, err := proxy.New(&proxy.Config{Registrars: []transport.Addr{r.Addr()}, Admin: "127.0.0.1:0", DrainTimeout: 5 * time.Second,
		Listeners: []proxy.ListenerConfig{{Listen: transport.MustParseAddr("127.0.0.1:0"), Pool: "P"}}}, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr(transport.MustParseAddr("127.0.0.1:0")).String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "x\n")
	bufio.NewReader(c).ReadString('\n')
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(t.Context()) }()
	admin := p.AdminAddr()
	waitFor(t, func() bool {
		resp, err := http.Get("http://" + admin + "/")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "1 listener · draining") && strings.Contains(string(b), "<b>Draining:</b>")
	})
	c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
