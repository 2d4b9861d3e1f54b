package mitm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA returns a CA certificate and its key valid from notBefore to
// notAfter, signed with key (a new P-256 key when key is nil).
func testCA(t testing.TB, key crypto.Signer, notBefore, notAfter time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// newTestAuthority returns an Authority over a fresh CA valid now.
func newTestAuthority(t testing.TB, cacheSize int) *Authority {
	t.Helper()
	now := time.Now()
	ca, key := testCA(t, nil, now.Add(-time.Hour), now.AddDate(1, 0, 0))
	a, err := NewAuthority(ca, key, cacheSize)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// caPool returns a pool holding only a's CA.
func caPool(a *Authority) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.CA())
	return p
}

// writePEM writes one PEM block to dir/name and returns its path.
func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
