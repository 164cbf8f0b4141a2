package hostile

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate for cn (also a DNS name), valid for
// 127.0.0.1, for servers and clients, as a tls.Certificate and PEM files.
func (ca *testCA) issue(t *testing.T, cn string) (tls.Certificate, []byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certPEM, keyPEM
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRegistrarTLS attacks the registrar's TLS listeners: ASAP over TLS and
// ENRP over mutual TLS restricted to one peer identity.
func TestRegistrarTLS(t *testing.T) {
	sc := currentScale()
	ca, rogue := newCA(t, "hostile test CA"), newCA(t, "rogue CA")
	dir := t.TempDir()
	_, srvCert, srvKey := ca.issue(t, "registrar")
	peer, _, _ := ca.issue(t, "peer")
	intruder, _, _ := ca.issue(t, "intruder")
	forged, _, _ := rogue.issue(t, "peer")
	cfg := fmt.Sprintf(`
[asap]
listen = ["tcp://127.0.0.1:0", "tls://127.0.0.1:0"]
[enrp]
listen = ["tls://127.0.0.1:0"]
mentor_discovery = "100ms"
peer_identities = ["peer"]
[admin]
listen = "127.0.0.1:0"
[timers]
keepalive_interval = "1s"
keepalive_timeout = "3s"
[limits]
max_connections = %d
[tls]
cert_file = %q
key_file = %q
client_ca_file = %q
`, sc.MaxConns, writeFile(t, dir, "srv.pem", srvCert), writeFile(t, dir, "srv.key", srvKey), writeFile(t, dir, "ca.pem", ca.pem))
	w := newWorld(t, cfg)
	asapTLS, enrpTLS := hostport(w.reg.addr(w.reg.asap, "tls")), hostport(w.reg.addr(w.reg.enrp, "tls"))
	client := func(c tls.Certificate) *tls.Config {
		tc := &tls.Config{RootCAs: ca.pool(), ServerName: "registrar"}
		if c.Certificate != nil {
			tc.Certificates = []tls.Certificate{c}
		}
		return tc
	}
	vs := loadVectors(t)

	w.runAttack(t, attack{name: "TLS: plaintext TCP mapping on the TLS ports", unit: "messages", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) {
			frames := misdirected(vs)
			a, err1 := sprayer{addr: asapTLS, workers: 4, batch: 8}.spray(frames)
			e, err2 := sprayer{addr: enrpTLS, workers: 4, batch: 8}.spray(frames)
			return a + e, outcome(errOr(err1, err2), "every connection failed its TLS handshake and was closed")
		}})
	w.runAttack(t, attack{name: "TLS: mutated RSPLIB vectors over TLS (ASAP)", unit: "messages", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) {
			sent, err := sprayer{addr: asapTLS, tls: client(peer), workers: 4, batch: 16}.spray(mutatedFrames(vs, sc.Mutations, 5, 0))
			return sent, outcome(err, "each refused with an error or ignored")
		}})
	w.runAttack(t, attack{name: "TLS: slowloris: half a TLS ClientHello", unit: "connections", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) {
			return slowloris(t, asapTLS, sc.Slowloris, sc.Hold, []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00})
		}})
	w.runAttack(t, attack{name: "TLS: ENRP peers with a forged, a missing and an unlisted certificate", unit: "connections", target: w.reg.daemon,
		run: func(t *testing.T) (int64, string) {
			var sent int64
			res := map[string]string{}
			for _, c := range []struct {
				name string
				cert tls.Certificate
				ok   bool // a table may be sent
			}{{"forged (rogue CA)", forged, false}, {"none", tls.Certificate{}, false}, {"unlisted (intruder)", intruder, false}, {"listed (peer)", peer, true}} {
				got := 0
				for range max(1, sc.HTTPRequests/250) {
					n := enrpTableOverTLS(t, enrpTLS, client(c.cert), w.reg.id)
					got = max(got, n)
					sent++
				}
				if got > 64 && !c.ok {
					t.Errorf("ENRP over TLS with certificate %s: the registrar sent %d bytes (a Handle Table Response)", c.name, got)
				}
				if got <= 64 && c.ok {
					t.Errorf("ENRP over TLS with certificate %s: no Handle Table Response (%d bytes)", c.name, got)
				}
				res[c.name] = fmt.Sprintf("%d bytes", got)
			}
			return sent, fmt.Sprintf("most bytes the registrar sent per certificate: %v", res)
		}})
}

func errOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// enrpTableOverTLS asks for the handlespace over ENRP/TLS with tc and
// returns how many bytes the registrar sent back before closing or going
// quiet: 0 when the handshake failed.
func enrpTableOverTLS(t *testing.T, addr string, tc *tls.Config, id uint32) int {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := tls.Client(nc, tc)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if c.Handshake() != nil {
		return 0
	}
	req, _ := (&wire.HandleTableRequest{Sender: 0x0badbad2, Receiver: id}).AppendBinary(nil)
	c.Write(appendDATA(append([]byte(nil), chunkINIT...), 0, wire.PPIDENRP, req))
	got := 0
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		n, err := c.Read(buf)
		got += n
		if err != nil {
			return got
		}
	}
}
