package mitm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadAuthorityKeyFormats(t *testing.T) {
	now := time.Now()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, typ string
		key       crypto.Signer
		der       []byte
	}{
		{"pkcs8-rsa", "PRIVATE KEY", rsaKey, pkcs8},
		{"ec", "EC PRIVATE KEY", ecKey, ecDER},
		{"pkcs1-rsa", "RSA PRIVATE KEY", rsaKey, x509.MarshalPKCS1PrivateKey(rsaKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ca, _ := testCA(t, tc.key, now.Add(-time.Hour), now.Add(time.Hour))
			certPath := writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
			keyPath := writePEM(t, dir, "ca-key.pem", tc.typ, tc.der)
			a, err := LoadAuthority(certPath, keyPath, 1)
			if err != nil {
				t.Fatal(err)
			}
			c, err := a.Certificate("example.com")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: caPool(a)}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLoadAuthorityErrors(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	certPath, keyPath, err := InitCA(filepath.Join(dir, "good"), now)
	if err != nil {
		t.Fatal(err)
	}

	// A leaf (not a CA) and its issuer's key.
	a, err := LoadAuthority(certPath, keyPath, 1)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Certificate("leaf.example.com")
	if err != nil {
		t.Fatal(err)
	}
	leafPath := writePEM(t, dir, "leaf.pem", "CERTIFICATE", leaf.Certificate[0])

	// An expired CA with its own key.
	expired, expiredKey := testCA(t, nil, now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0))
	expiredPath := writePEM(t, dir, "expired.pem", "CERTIFICATE", expired.Raw)
	expiredKeyDER, _ := x509.MarshalPKCS8PrivateKey(expiredKey)
	expiredKeyPath := writePEM(t, dir, "expired-key.pem", "PRIVATE KEY", expiredKeyDER)

	// A well-formed key that belongs to no certificate here.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalPKCS8PrivateKey(other)
	otherPath := writePEM(t, dir, "other-key.pem", "PRIVATE KEY", otherDER)

	// Garbage inside a key PEM block, which must not be echoed.
	garbage := make([]byte, 64)
	rand.Read(garbage)
	garbageKeyPath := writePEM(t, dir, "garbage-key.pem", "PRIVATE KEY", garbage)
	garbageCertPath := writePEM(t, dir, "garbage.pem", "CERTIFICATE", garbage)
	notPEMPath := filepath.Join(dir, "not.pem")
	writeFile(t, notPEMPath, "hello, not PEM\n")

	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name            string
		cert, key, want string
		size            int
	}{
		{"missing cert", missing, keyPath, "tls.ca_cert: ", 1},
		{"missing key", certPath, missing, "tls.ca_key: ", 1},
		{"cert not PEM", notPEMPath, keyPath, "tls.ca_cert: ", 1},
		{"cert garbage PEM", garbageCertPath, keyPath, "tls.ca_cert: ", 1},
		{"key not PEM", certPath, notPEMPath, "tls.ca_key: ", 1},
		{"key garbage PEM", certPath, garbageKeyPath, "tls.ca_key: ", 1},
		{"key is a certificate", certPath, certPath, "tls.ca_key: ", 1},
		{"cert is a leaf", leafPath, keyPath, "tls.ca_cert: ", 1},
		{"cert expired", expiredPath, expiredKeyPath, "tls.ca_cert: ", 1},
		{"key does not match", certPath, otherPath, "tls.ca_key: ", 1},
		{"cache size 0", certPath, keyPath, "tls.cert_cache_size: ", 0},
		{"cache size negative", certPath, keyPath, "tls.cert_cache_size: ", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := LoadAuthority(tc.cert, tc.key, tc.size)
			if err == nil {
				t.Fatalf("LoadAuthority succeeded: %v", a)
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.HasPrefix(msg, tc.want) {
				t.Errorf("error %q does not start with %q", msg, tc.want)
			}
			for _, secret := range []string{
				"PRIVATE KEY",
				base64.StdEncoding.EncodeToString(garbage)[:16],
				hex.EncodeToString(garbage)[:16],
				base64.StdEncoding.EncodeToString(otherDER)[:16],
			} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q contains %q", msg, secret)
				}
			}
		})
	}
}

func TestNewAuthorityErrors(t *testing.T) {
	now := time.Now()
	ca, key := testCA(t, nil, now.Add(-time.Hour), now.Add(time.Hour))
	_, otherKey := testCA(t, nil, now.Add(-time.Hour), now.Add(time.Hour))
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"nil cert", func() error { _, err := NewAuthority(nil, key, 1); return err }, "tls.ca_cert: "},
		{"nil key", func() error { _, err := NewAuthority(ca, nil, 1); return err }, "tls.ca_key: "},
		{"mismatch", func() error { _, err := NewAuthority(ca, otherKey, 1); return err }, "tls.ca_key: "},
		{"cache size", func() error { _, err := NewAuthority(ca, key, 0); return err }, "tls.cert_cache_size: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.err(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("err = %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestCertificateDNS(t *testing.T) {
	a := newTestAuthority(t, 10)
	c, err := a.Certificate("api.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 || string(c.Certificate[1]) != string(a.CA().Raw) {
		t.Fatalf("chain has %d certificates, want [leaf, CA]", len(c.Certificate))
	}
	if string(c.Leaf.Raw) != string(c.Certificate[0]) {
		t.Fatal("Leaf is not Certificate[0]")
	}
	leaf := c.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{
		DNSName:   "api.example.com",
		Roots:     caPool(a),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "api.example.com" || len(leaf.DNSNames) != 1 || len(leaf.IPAddresses) != 0 {
		t.Errorf("CN %q DNS %v IP %v", leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("IsCA %v KeyUsage %v", leaf.IsCA, leaf.KeyUsage)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("leaf key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 129 {
		t.Errorf("serial %v", leaf.SerialNumber)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != 30*24*time.Hour+time.Hour {
		t.Errorf("validity %v, want 30 days + 1h backdate", d)
	}

	for _, h := range []string{"API.Example.COM.", "api.example.com"} {
		again, err := a.Certificate(h)
		if err != nil {
			t.Fatal(err)
		}
		if again != c {
			t.Errorf("%q: not the cached certificate", h)
		}
	}
	if issued, hits := a.Stats(); issued != 1 || hits != 2 {
		t.Errorf("Stats = %d issued, %d hits; want 1, 2", issued, hits)
	}

	// Every leaf shares one key.
	other, err := a.Certificate("other.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if other.PrivateKey != c.PrivateKey {
		t.Error("leaves do not share the leaf key")
	}
}

func TestCertificateIP(t *testing.T) {
	a := newTestAuthority(t, 10)
	for _, tc := range []struct{ host, verify string }{
		{"127.0.0.1", "127.0.0.1"},
		{"::1", "::1"},
		{"[::1]", "::1"},
	} {
		c, err := a.Certificate(tc.host)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Leaf.IPAddresses) != 1 || len(c.Leaf.DNSNames) != 0 {
			t.Errorf("%s: IP %v DNS %v, want one IP SAN", tc.host, c.Leaf.IPAddresses, c.Leaf.DNSNames)
		}
		if !c.Leaf.IPAddresses[0].Equal(net.ParseIP(tc.verify)) {
			t.Errorf("%s: IP SAN %v", tc.host, c.Leaf.IPAddresses[0])
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: tc.verify, Roots: caPool(a)}); err != nil {
			t.Errorf("%s: %v", tc.host, err)
		}
	}
	if issued, hits := a.Stats(); issued != 2 || hits != 1 {
		t.Errorf("Stats = %d issued, %d hits; want 2, 1 ([::1] is ::1)", issued, hits)
	}
}

func TestCertificateBadHost(t *testing.T) {
	a := newTestAuthority(t, 10)
	for _, h := range []string{"", ".", "a..b", "exa mple.com", "*.example.com", "[]", strings.Repeat("a", 64) + ".com"} {
		if _, err := a.Certificate(h); err == nil {
			t.Errorf("Certificate(%q) succeeded", h)
		}
	}
	if issued, _ := a.Stats(); issued != 0 {
		t.Errorf("issued %d", issued)
	}
}

func TestCertificateLRU(t *testing.T) {
	a := newTestAuthority(t, 2)
	for _, h := range []string{"a.example", "b.example", "c.example"} {
		if _, err := a.Certificate(h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Certificate("c.example"); err != nil { // still cached
		t.Fatal(err)
	}
	if _, err := a.Certificate("a.example"); err != nil { // evicted: issued again
		t.Fatal(err)
	}
	if issued, hits := a.Stats(); issued != 4 || hits != 1 {
		t.Errorf("Stats = %d issued, %d hits; want 4, 1", issued, hits)
	}
}

func TestCertificateConcurrent(t *testing.T) {
	a := newTestAuthority(t, 10)
	const n = 50
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		certs = make([]*tls.Certificate, n)
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			certs[i], errs[i] = a.Certificate("new.example.com")
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if certs[i] != certs[0] {
			t.Fatalf("goroutine %d got another certificate", i)
		}
	}
	if issued, hits := a.Stats(); issued != 1 || hits != n-1 {
		t.Errorf("Stats = %d issued, %d hits; want 1, %d", issued, hits, n-1)
	}
}

// TestCertificateRenewal drives the Authority's clock: a cached leaf is
// served until it expires within 24h, then issued again, except when it
// already ends with the CA.
func TestCertificateRenewal(t *testing.T) {
	start := time.Now()
	ca, key := testCA(t, nil, start.Add(-time.Hour), start.AddDate(0, 0, 45))
	now := start
	a, err := newAuthority(ca, key, 10, func() time.Time { return now }, keyCACert, keyCAKey)
	if err != nil {
		t.Fatal(err)
	}
	get := func(wantIssued, wantHits uint64) *tls.Certificate {
		t.Helper()
		c, err := a.Certificate("renew.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if issued, hits := a.Stats(); issued != wantIssued || hits != wantHits {
			t.Fatalf("at +%v: Stats = %d issued, %d hits; want %d, %d", now.Sub(start), issued, hits, wantIssued, wantHits)
		}
		return c
	}
	first := get(1, 0)
	now = first.Leaf.NotAfter.Add(-24 * time.Hour) // 24h left: still served
	get(1, 1)
	now = now.Add(time.Second) // less than 24h left
	second := get(2, 1)
	if !second.Leaf.NotAfter.Equal(ca.NotAfter) || second.Leaf.NotAfter.Equal(first.Leaf.NotAfter) {
		t.Fatalf("renewed NotAfter %v, want the CA's %v", second.Leaf.NotAfter, ca.NotAfter)
	}
	now = ca.NotAfter.Add(-time.Hour) // ends with the CA: nothing to gain
	get(2, 2)
}

func TestCertificateCapsAtCA(t *testing.T) {
	now := time.Now()
	ca, key := testCA(t, nil, now.Add(-time.Hour), now.Add(48*time.Hour))
	a, err := NewAuthority(ca, key, 1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.Certificate("short.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Leaf.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("NotAfter %v, want the CA's %v", c.Leaf.NotAfter, ca.NotAfter)
	}
}

func TestHandshake(t *testing.T) {
	a := newTestAuthority(t, 10)
	for _, tc := range []struct {
		name    string
		roots   *x509.CertPool
		wantErr bool
	}{
		{"trusted", caPool(a), false},
		{"untrusted", x509.NewCertPool(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cconn, sconn := net.Pipe()
			server := tls.Server(sconn, &tls.Config{
				GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
					return a.Certificate(hello.ServerName)
				},
				NextProtos: []string{"h2", "http/1.1"},
			})
			client := tls.Client(cconn, &tls.Config{
				RootCAs:    tc.roots,
				ServerName: "api.example.com",
				NextProtos: []string{"h2"},
			})
			serverErr := make(chan error, 1)
			go func() { serverErr <- server.Handshake() }()
			err := client.Handshake()
			// Close the pipe, not the tls.Conns: their close_notify writes
			// would block each other on the unbuffered pipe.
			cconn.Close()
			sErr := <-serverErr
			sconn.Close()
			if tc.wantErr {
				if err == nil {
					t.Fatal("client handshake succeeded with an untrusted CA")
				}
				return
			}
			if err != nil || sErr != nil {
				t.Fatalf("client: %v, server: %v", err, sErr)
			}
			st := client.ConnectionState()
			if got := st.PeerCertificates[0].Subject.CommonName; got != "api.example.com" {
				t.Errorf("peer CN %q", got)
			}
			if len(st.VerifiedChains) != 1 || !st.VerifiedChains[0][len(st.VerifiedChains[0])-1].Equal(a.CA()) {
				t.Errorf("verified chain does not end at the CA")
			}
			if st.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN %q", st.NegotiatedProtocol)
			}
		})
	}
}
