package proxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/proxy"
)

func TestExampleConfigIsValid(t *testing.T) {
	c, err := proxy.LoadConfig("../configs/proxy.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	if l.Listen.ShortString() != "127.0.0.1:8080" || l.Pool != "EchoPool" || l.Attempts() != 4 || l.ConnectTimeout != time.Second || l.IdleTimeout != 10*time.Minute {
		t.Fatalf("listener = %+v", l)
	}
	if c.Cache.StaleTimeout != 5*time.Second || c.DrainTimeout != 30*time.Second {
		t.Fatalf("config = %+v", c)
	}
}

func TestUnknownKeyNamed(t *testing.T) {
	_, err := proxy.ParseConfig([]byte("registrars = []\n[[listener]]\nlisten = \"127.0.0.1:1\"\npool = \"P\"\nretires = 3\n"))
	if err == nil || !strings.Contains(err.Error(), "listener.retires") {
		t.Fatalf("err = %v, want the unknown key named", err)
	}
}

// TestBadAddressesNamed: an address that does not parse fails the decoding
// with the key and the reason.
func TestBadAddressesNamed(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{"registrars = [\"udp://1.2.3.4:5\"]\n", `"registrars"`},
		{"registrars = [\"udp://1.2.3.4:5\"]\n", `unknown scheme "udp"`},
		{"[[listener]]\nlisten = \"nohost\"\npool = \"P\"\n", `"listener.listen"`},
		{"[[listener]]\nlisten = \"nohost\"\npool = \"P\"\n", `missing port`},
	} {
		_, err := proxy.ParseConfig([]byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseConfig(%q) = %v, want an error containing %s", tt.text, err, tt.want)
		}
	}
}

func TestValidateReportsEverything(t *testing.T) {
	c, err := proxy.ParseConfig([]byte(`
registrars = ["127.0.0.1:3863"]
[[listener]]
listen = "tls://127.0.0.1:1"
proxy_protocol = "v3"
replay_buffer = -1
retries = -2
[[listener]]
listen = "127.0.0.1:1"
pool = "P"
idle_timeout = "-1s"
`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"listener[0].listen", "listener[0].pool", "listener[0].proxy_protocol",
		"listener[0].replay_buffer", "listener[0].retries", "listener[1].idle_timeout"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestPoolHandleEscapes(t *testing.T) {
	c, err := proxy.ParseConfig([]byte("registrars = []\n[[listener]]\nlisten = \"127.0.0.1:1\"\npool = 'nul\\x00\\xffx\\\\'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Listeners[0].Pool; got != "nul\x00\xffx\\" {
		t.Fatalf("pool = %x", string(got))
	}
	_, err = proxy.ParseConfig([]byte("registrars = []\n[[listener]]\nlisten = \"127.0.0.1:1\"\npool = 'bad\\q'\n"))
	if err == nil || !strings.Contains(err.Error(), "pool") || !strings.Contains(err.Error(), "bad escape") {
		t.Fatalf("bad escape: %v", err)
	}
}
