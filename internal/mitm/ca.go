package mitm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names InitCA writes inside its directory.
const (
	caCertName = "ca.pem"
	caKeyName  = "ca-key.pem"
)

// caValidityYears is how long a CA from InitCA lasts
// (docs/tls-interception.md, "Set it up": 10 years).
const caValidityYears = 10

// InitCA writes dir/ca.pem and dir/ca-key.pem: a new ECDSA P-256 CA
// (CA:true, path length 0, key usage certSign and cRLSign) valid from
// now-1h for 10 years, with subject O "proxyd" and CN
// "proxyd interception CA <random hex>". The key is a PKCS#8 PEM file of
// mode 0600, the certificate mode 0644. dir is created (0700) if missing.
//
// InitCA never overwrites: if either file exists it writes nothing and its
// error names the existing file. Both files are created with O_EXCL, so a
// concurrent InitCA into the same directory cannot clobber them either.
func InitCA(dir string, now time.Time) (certPath, keyPath string, err error) {
	certPath = filepath.Join(dir, caCertName)
	keyPath = filepath.Join(dir, caKeyName)
	for _, p := range []string{certPath, keyPath} {
		switch _, err := os.Lstat(p); {
		case err == nil:
			return "", "", fmt.Errorf("mitm: %s already exists; refusing to overwrite it", p)
		case !errors.Is(err, fs.ErrNotExist):
			return "", "", fmt.Errorf("mitm: %w", err)
		}
	}

	certPEM, keyPEM, err := newCA(now)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("mitm: %w", err)
	}
	// The key first: a cert without its key is useless, and if the cert
	// cannot be written the key we just created is removed again.
	if err := writeExclusive(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeExclusive(certPath, certPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return "", "", err
	}
	return certPath, keyPath, nil
}

// newCA returns the PEM certificate and PKCS#8 PEM key of a new CA.
func newCA(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("mitm: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tag := make([]byte, 4)
	if _, err := rand.Read(tag); err != nil {
		return nil, nil, fmt.Errorf("mitm: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "proxyd interception CA " + hex.EncodeToString(tag),
			Organization: []string{"proxyd"},
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(caValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Path length 0: this CA signs leaves only, never another CA.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("mitm: create CA certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("mitm: encode CA key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, nil
}

// writeExclusive creates path (failing if it exists), writes data and
// syncs it. The mode is set explicitly so that the umask cannot change it.
// On failure the partial file is removed.
func writeExclusive(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("mitm: %w", err)
	}
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("mitm: write %s: %w", path, err)
	}
	return nil
}

// serialLimit is 2^128: serials are random 128-bit numbers (RFC 5280
// §4.1.2.2 allows up to 20 octets and asks for them to be unpredictable).
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial returns a random serial in [1, 2^128].
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		return nil, fmt.Errorf("mitm: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // a serial must be positive
}

// TrustInstructions returns the text `proxyd ca init` prints after writing
// certPath: how to make common clients trust the CA.
func TrustInstructions(certPath string) string {
	p := shellQuote(certPath)
	bundle := shellQuote(filepath.Join(filepath.Dir(certPath), "bundle.pem"))
	var b strings.Builder
	fmt.Fprintf(&b, `proxyd's interception CA is %[1]s.
Clients must trust it for the hosts listed in tls.intercept. Hosts that are
not intercepted still present their real certificates, so a client whose
trust store is *replaced* (not extended) needs a bundle holding the system
roots plus this CA:

  cat /etc/ssl/certs/ca-certificates.crt %[1]s > %[2]s

Debian/Ubuntu system store (curl, OpenSSL, Go and most tools follow it):
  sudo cp %[1]s /usr/local/share/ca-certificates/proxyd.crt
  sudo update-ca-certificates

curl:
  curl --cacert %[2]s ...         (or: export CURL_CA_BUNDLE=%[2]s)

Python requests (REQUESTS_CA_BUNDLE replaces certifi's bundle, so point it
at the combined bundle, not at the CA alone):
  export REQUESTS_CA_BUNDLE=%[2]s

OpenSSL-based clients (and Go on Linux, which reads SSL_CERT_FILE too);
the file replaces the default store, so use the bundle:
  export SSL_CERT_FILE=%[2]s

Node.js (adds to the built-in roots; read once at process start):
  export NODE_EXTRA_CA_CERTS=%[1]s

Java (import into a truststore, then point the JVM at it):
  keytool -importcert -noprompt -alias proxyd -file %[1]s \
    -keystore proxyd-truststore.p12 -storetype PKCS12 -storepass changeit
  java -Djavax.net.ssl.trustStore=proxyd-truststore.p12 \
    -Djavax.net.ssl.trustStorePassword=changeit ...
  (or add it to the JDK's own store: keytool -importcert -cacerts -alias proxyd -file %[1]s)

Go programs: SSL_CERT_FILE=%[2]s as above, or in code:
  pool, _ := x509.SystemCertPool()
  pool.AppendCertsFromPEM(pemBytesOf(%[1]s))
  transport.TLSClientConfig = &tls.Config{RootCAs: pool}

Keep the key file (ca-key.pem, mode 0600) private: whoever holds it can
impersonate any site to clients that trust this CA.
`, p, bundle)
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it needs quoting, so that the
// printed commands can be pasted as they are.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("/._-+:,@%=", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
