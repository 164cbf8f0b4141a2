package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// testPKI is a throwaway CA with a server and a client certificate.
type testPKI struct {
	pool           *x509.CertPool
	server, client tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{
		pool:   pool,
		server: leaf(2, "registrar", x509.ExtKeyUsageServerAuth),
		client: leaf(3, "pe-42", x509.ExtKeyUsageClientAuth),
	}
}

func (p testPKI) serverConfig() *Config {
	return &Config{HeartbeatInterval: -1, TLS: &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	}}
}

func TestTLSMutualAuth(t *testing.T) {
	pki := newTestPKI(t)
	cli := &Config{HeartbeatInterval: -1, TLS: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}}
	c, s := pair(t, SchemeTLS, pki.serverConfig(), cli)
	if err := c.WriteMessage(Message{PPID: 11, Data: unhex(t, hexEchoMessage)}); err != nil {
		t.Fatal(err)
	}
	m, err := readMessage(t, s)
	if err != nil || m.PPID != 11 || string(m.Data) != string(unhex(t, hexEchoMessage)) {
		t.Fatalf("server got %+v, %v", m, err)
	}
	if err := s.WriteMessage(Message{PPID: 11, Data: []byte("reply")}); err != nil {
		t.Fatal(err)
	}
	if m, err := readMessage(t, c); err != nil || string(m.Data) != "reply" {
		t.Fatalf("client got %+v, %v", m, err)
	}
	st, ok := s.(interface {
		ConnectionState() (tls.ConnectionState, bool)
	}).ConnectionState()
	if !ok || len(st.PeerCertificates) == 0 || st.PeerCertificates[0].Subject.CommonName != "pe-42" {
		t.Fatalf("server sees client certificate %v (tls %v)", st.PeerCertificates, ok)
	}
}

func TestTLSRejectsClientWithoutCert(t *testing.T) {
	pki := newTestPKI(t)
	cli := &Config{HeartbeatInterval: -1, TLS: &tls.Config{RootCAs: pki.pool}}
	ln := listen(t, SchemeTLS, pki.serverConfig())
	ch := accept(t, ln)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	c, err := Dial(ctx, mustAddrFromNet(t, SchemeTLS, ln.Addr()), cli)
	if err == nil {
		// TLS 1.3: the client learns of the rejection on its first read.
		defer c.Close()
		if _, err := readMessage(t, c); err == nil {
			t.Fatal("client without certificate could read")
		}
	}
	s := recvConn(t, ch)
	_, err = readMessage(t, s)
	if err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("server ReadMessage = %v, want a TLS handshake error", err)
	}
}

func TestTLSRequiresConfig(t *testing.T) {
	if _, err := Listen(MustParseAddr("tls://127.0.0.1:0"), nil); err == nil || !strings.Contains(err.Error(), "Config.TLS") {
		t.Fatalf("Listen without TLS config = %v", err)
	}
	if _, err := Dial(context.Background(), MustParseAddr("tls://127.0.0.1:1"), &Config{}); err == nil || !strings.Contains(err.Error(), "Config.TLS") {
		t.Fatalf("Dial without TLS config = %v", err)
	}
}

func TestTLSServerHandshakeTimeout(t *testing.T) {
	pki := newTestPKI(t)
	cfg := pki.serverConfig()
	cfg.ChunkTimeout = 100 * time.Millisecond
	ln := listen(t, SchemeTLS, cfg)
	_, s := silentClient(t, ln) // connects, never says hello
	_, err := readMessage(t, s)
	if err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("ReadMessage = %v, want a TLS handshake timeout", err)
	}
}

// TestSCTPUnavailable: without kernel SCTP, sctp:// fails with ErrNoSCTP and
// a reason.
func TestSCTPUnavailable(t *testing.T) {
	ok, reason := SCTPAvailable()
	if ok {
		t.Skip("kernel has SCTP; TestSCTPRoundTrip covers it")
	}
	if !errors.Is(reason, ErrNoSCTP) || reason.Error() == ErrNoSCTP.Error() {
		t.Fatalf("SCTPAvailable reason = %v, want ErrNoSCTP with the cause", reason)
	}
	if _, err := Listen(MustParseAddr("sctp://127.0.0.1:0"), nil); !errors.Is(err, ErrNoSCTP) {
		t.Fatalf("Listen sctp = %v, want ErrNoSCTP", err)
	}
	if _, err := Dial(context.Background(), MustParseAddr("sctp://127.0.0.1:9"), nil); !errors.Is(err, ErrNoSCTP) {
		t.Fatalf("Dial sctp = %v, want ErrNoSCTP", err)
	}
}

// TestSCTPRoundTrip runs where the kernel has SCTP (the SCTP VM).
func TestSCTPRoundTrip(t *testing.T) {
	if ok, reason := SCTPAvailable(); !ok {
		t.Skipf("no kernel SCTP here: %v", reason)
	}
	c, s := pair(t, SchemeSCTP, nil, nil)
	msgs := []Message{
		{PPID: 11, Stream: 0, Data: unhex(t, hexEchoMessage)},
		{PPID: 12, Stream: 1, Data: []byte("enrp")},
		{PPID: 0xdeadbeef, Stream: 2, Data: make([]byte, 60000)},
	}
	for _, m := range msgs {
		if err := c.WriteMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range msgs {
		got, err := readMessage(t, s)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.PPID != want.PPID || got.Stream != want.Stream || string(got.Data) != string(want.Data) {
			t.Fatalf("message %d: got PPID %d stream %d len %d, want PPID %d stream %d len %d",
				i, got.PPID, got.Stream, len(got.Data), want.PPID, want.Stream, len(want.Data))
		}
	}
	if len(s.PeerAddrs()) == 0 {
		t.Fatal("PeerAddrs is empty")
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.ReadMessage()
		errc <- err
	}()
	s.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadMessage after Close = %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Close did not unblock ReadMessage")
	}
}
