package registrar

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rserpool/rserpool/wire"
)

// issuePeer issues a registrar certificate usable on both ends of an ENRP
// connection (server and client authentication, IP SAN 127.0.0.1) and
// writes it with its key to dir.
func (ca *testCA) issuePeer(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestENRPMutualTLS: registrars peer over tls:// with client certificates;
// one whose certificate is not in enrp.peer_identities gets nothing.
func TestENRPMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	tlsCfg := func(cn string, peers ...string) Config {
		cfg := enrpTestConfig(peers...)
		cfg.ENRP.Listen = []string{"tls://127.0.0.1:0"}
		cf, kf := ca.issuePeer(t, dir, cn)
		cfg.TLS = TLSConfig{CertFile: cf, KeyFile: kf, ClientCAFile: caFile}
		cfg.ENRP.PeerIdentities = []string{"registrar-a", "registrar-b"}
		return cfg
	}
	a := startReady(t, tlsCfg("registrar-a"))
	b := startReady(t, tlsCfg("registrar-b", a.r.ENRPAddrs()[0]))
	intruder := start(t, tlsCfg("intruder", a.r.ENRPAddrs()[0]))

	pe := dial(t, a.addr)
	if r := pe.register(regMsg("TLSPool", 0x77, 7000, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("register: %+v", r.Error)
	}
	waitSnap(t, b, 3*time.Second, "PE replicated over mutual TLS", func(s Snapshot) bool { return s.Elements == 1 })
	// The intruder never gets the mentor's handlespace: it serves alone
	// after mentor discovery, with nothing in it.
	select {
	case <-intruder.r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("intruder never ready")
	}
	if n := intruder.numElements(t); n != 0 {
		t.Fatalf("a registrar with an unlisted certificate received %d PEs", n)
	}
	s, _ := a.r.Snapshot(t.Context())
	for _, p := range s.Peers {
		if p.ID == intruder.r.ID().String() {
			t.Fatalf("intruder in the peer list: %+v", s.Peers)
		}
	}
}
