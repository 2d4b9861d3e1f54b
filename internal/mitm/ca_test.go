package mitm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca") // created by InitCA
	now := time.Now()
	certPath, keyPath, err := InitCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if certPath != filepath.Join(dir, "ca.pem") || keyPath != filepath.Join(dir, "ca-key.pem") {
		t.Fatalf("paths = %s, %s", certPath, keyPath)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, certPath: 0o644, keyPath: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}

	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(keyPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("key file is not PKCS#8 PEM")
	}
	ca, err := readCertificate(certPath)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("IsCA=%v MaxPathLen=%d MaxPathLenZero=%v", ca.IsCA, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", ca.PublicKey)
	}
	if !strings.HasPrefix(ca.Subject.CommonName, "proxyd interception CA ") ||
		len(ca.Subject.Organization) != 1 || ca.Subject.Organization[0] != "proxyd" {
		t.Errorf("subject %v", ca.Subject)
	}
	if !ca.NotBefore.Equal(now.Add(-time.Hour).Truncate(time.Second)) {
		t.Errorf("NotBefore %v, want now-1h", ca.NotBefore)
	}
	if d := ca.NotAfter.Sub(now); d < 3650*24*time.Hour || d > 3653*24*time.Hour {
		t.Errorf("validity %v, want about 10 years", d)
	}

	// A second InitCA refuses, names the file and changes nothing.
	certBefore, _ := os.ReadFile(certPath)
	if _, _, err := InitCA(dir, now); err == nil || !strings.Contains(err.Error(), certPath) {
		t.Errorf("second InitCA: err = %v, want one naming %s", err, certPath)
	}
	certAfter, _ := os.ReadFile(certPath)
	keyAfter, _ := os.ReadFile(keyPath)
	if !bytes.Equal(certBefore, certAfter) || !bytes.Equal(keyPEM, keyAfter) {
		t.Error("second InitCA changed the files")
	}

	a, err := LoadAuthority(certPath, keyPath, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !a.CA().Equal(ca) {
		t.Error("LoadAuthority returned another CA")
	}
	if _, err := a.Certificate("example.com"); err != nil {
		t.Fatal(err)
	}
}

func TestInitCARefusesWhenOnlyKeyExists(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "ca-key.pem")
	if err := os.WriteFile(keyPath, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := InitCA(dir, time.Now())
	if err == nil || !strings.Contains(err.Error(), keyPath) {
		t.Fatalf("err = %v, want one naming %s", err, keyPath)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); !os.IsNotExist(err) {
		t.Errorf("ca.pem was written: %v", err)
	}
	if b, _ := os.ReadFile(keyPath); string(b) != "old" {
		t.Error("key file changed")
	}
}

func TestTrustInstructions(t *testing.T) {
	const p = "/etc/proxyd/ca.pem"
	text := TrustInstructions(p)
	for _, want := range []string{
		"cp " + p + " /usr/local/share/ca-certificates/proxyd.crt",
		"update-ca-certificates",
		"--cacert", "CURL_CA_BUNDLE",
		"REQUESTS_CA_BUNDLE", "cat /etc/ssl/certs/ca-certificates.crt " + p + " > /etc/proxyd/bundle.pem",
		"SSL_CERT_FILE",
		"NODE_EXTRA_CA_CERTS=" + p,
		"keytool -importcert", "-file " + p,
		"AppendCertsFromPEM",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("instructions lack %q", want)
		}
	}
	if got := TrustInstructions("/tmp/my dir/ca.pem"); !strings.Contains(got, "'/tmp/my dir/ca.pem'") {
		t.Errorf("a path with a space is not quoted:\n%s", got)
	}
}
