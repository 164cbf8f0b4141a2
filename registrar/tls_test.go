package registrar

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func TestTLSIdentityAuthorization(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sc, sk := ca.issue(t, "registrar", true)
	cfg := testConfig()
	cfg.ASAP.Listen = []string{"tls://127.0.0.1:0", "tcp://127.0.0.1:0"}
	cfg.TLS = TLSConfig{CertFile: write("s.pem", sc), KeyFile: write("s.key", sk), ClientCAFile: write("ca.pem", ca.pem)}
	cfg.Pools = []PoolConfig{{Handle: "Secure", TLSIdentities: []string{"pe-1"}}}
	h := start(t, cfg)
	var tlsAddr, tcpAddr string
	for _, a := range h.r.ASAPAddrs() {
		if strings.HasPrefix(a, "tls://") {
			tlsAddr = a
		} else {
			tcpAddr = a
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	dialTLS := func(cn string) *client {
		cc, ck := ca.issue(t, cn, false)
		pair, err := tls.X509KeyPair(cc, ck)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tc, err := transport.Dial(ctx, transport.MustParseAddr(tlsAddr), &transport.Config{HeartbeatInterval: -1,
			TLS: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		cl := &client{t: t, c: tc, msgs: make(chan wire.Message, 64), closed: make(chan struct{})}
		cl.autoAck.Store(true)
		cl.wg.Add(1)
		go cl.read()
		t.Cleanup(cl.close)
		return cl
	}
	if r := dialTLS("pe-1").register(regMsg("Secure", 1, 7000, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("authorized identity rejected: %+v", r.Error)
	}
	if r := dialTLS("pe-2").register(regMsg("Secure", 2, 7000, wire.PolicyRoundRobin)); !r.Reject || cause(r.Error) != wire.CauseRejectedSecurity {
		t.Fatalf("unlisted identity: %+v", r)
	}
	plain := dial(t, tcpAddr)
	plain.autoAck.Store(true)
	if r := plain.register(regMsg("Secure", 3, 7000, wire.PolicyRoundRobin)); !r.Reject || cause(r.Error) != wire.CauseRejectedSecurity {
		t.Fatalf("plain TCP into a TLS-only pool: %+v", r)
	}
	if r := plain.register(regMsg("Open", 3, 7000, wire.PolicyRoundRobin)); r.Reject {
		t.Fatalf("open pool over plain TCP: %+v", r.Error)
	}
}
