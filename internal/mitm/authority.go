package mitm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Leaf lifetimes.
const (
	leafBackdate = time.Hour           // NotBefore = now - leafBackdate, for clients with a slow clock
	leafLifetime = 30 * 24 * time.Hour // NotAfter = now + leafLifetime, capped at the CA's NotAfter
	leafRenewal  = 24 * time.Hour      // a cached leaf expiring sooner than this is issued again
)

// Config keys named in errors.
const (
	keyCACert    = "tls.ca_cert"
	keyCAKey     = "tls.ca_key"
	keyCacheSize = "tls.cert_cache_size"
)

var (
	errEmptyHost   = errors.New("mitm: empty host")
	errInvalidHost = errors.New("mitm: invalid host name")
)

// Authority issues leaf certificates signed by proxyd's CA and keeps them
// in an LRU cache. Create it with LoadAuthority or NewAuthority; the zero
// value is not usable. It is safe for concurrent use.
type Authority struct {
	ca      *x509.Certificate
	caKey   crypto.Signer
	leafKey *ecdsa.PrivateKey // shared by every leaf, see doc.go
	now     func() time.Time

	cache *lru.Cache[string, *tls.Certificate] // safe for concurrent use on its own

	issued atomic.Uint64
	hits   atomic.Uint64

	mu struct {
		sync.Mutex
		// inflight holds the issuance under way per host. A call is
		// added to the cache before it leaves inflight, both under mu,
		// so a caller holding mu finds a host in one or the other.
		inflight map[string]*call
	}
}

// call is one issuance that concurrent callers for the same host share.
type call struct {
	done chan struct{} // closed when cert and err are set
	cert *tls.Certificate
	err  error
}

// LoadAuthority reads the CA certificate and key from PEM files (the
// tls.ca_cert and tls.ca_key settings) and returns an Authority whose cache
// holds cacheSize leaves. The key may be PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"). Errors name the config
// key they are about; none contains key material.
func LoadAuthority(certFile, keyFile string, cacheSize int) (*Authority, error) {
	if err := checkCacheSize(cacheSize); err != nil {
		return nil, err
	}
	ca, err := readCertificate(certFile)
	if err != nil {
		return nil, err
	}
	key, err := readPrivateKey(keyFile)
	if err != nil {
		return nil, err
	}
	return newAuthority(ca, key, cacheSize, time.Now, keyCACert+": "+certFile, keyCAKey+": "+keyFile)
}

// NewAuthority is LoadAuthority for a certificate and key already parsed.
// ca must be a CA certificate valid now and key its private key; the
// Authority keeps both and does not modify them.
func NewAuthority(ca *x509.Certificate, key crypto.Signer, cacheSize int) (*Authority, error) {
	return newAuthority(ca, key, cacheSize, time.Now, keyCACert, keyCAKey)
}

// newAuthority checks ca and key at now() and builds the Authority.
// certName and keyName prefix the errors about each.
func newAuthority(ca *x509.Certificate, key crypto.Signer, cacheSize int, now func() time.Time, certName, keyName string) (*Authority, error) {
	if err := checkCacheSize(cacheSize); err != nil {
		return nil, err
	}
	if ca == nil {
		return nil, fmt.Errorf("%s: no certificate", certName)
	}
	if key == nil {
		return nil, fmt.Errorf("%s: no private key", keyName)
	}
	if err := checkCA(ca, now()); err != nil {
		return nil, fmt.Errorf("%s: %w", certName, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(ca.PublicKey) {
		return nil, fmt.Errorf("%s: private key does not match the public key of the CA certificate (%s)", keyName, certName)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mitm: generate leaf key: %w", err)
	}
	cache, err := lru.New[string, *tls.Certificate](cacheSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyCacheSize, err)
	}
	a := &Authority{ca: ca, caKey: key, leafKey: leafKey, now: now, cache: cache}
	a.mu.inflight = make(map[string]*call)
	return a, nil
}

func checkCacheSize(n int) error {
	if n < 1 {
		return fmt.Errorf("%s: must be at least 1, got %d", keyCacheSize, n)
	}
	return nil
}

// checkCA reports why ca cannot sign leaves at now, if it cannot.
func checkCA(ca *x509.Certificate, now time.Time) error {
	switch {
	case !ca.BasicConstraintsValid || !ca.IsCA:
		return fmt.Errorf("certificate %q is not a CA (basicConstraints CA:true missing)", ca.Subject.CommonName)
	case ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0:
		// RFC 5280 §4.2.1.3: a CA that signs certificates must assert
		// keyCertSign when the extension is present.
		return fmt.Errorf("certificate %q lacks the certSign key usage", ca.Subject.CommonName)
	case now.After(ca.NotAfter):
		return fmt.Errorf("certificate %q expired at %s", ca.Subject.CommonName, ca.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(ca.NotBefore):
		return fmt.Errorf("certificate %q is not valid before %s", ca.Subject.CommonName, ca.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// readCertificate parses the first CERTIFICATE block of a PEM file.
func readCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyCACert, err)
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%s: %s: no PEM CERTIFICATE block", keyCACert, path)
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", keyCACert, path, err)
		}
		return c, nil
	}
}

// readPrivateKey parses the first private key block of a PEM file. Its
// errors describe the problem without quoting the file or the parser's
// own message, so that no part of a key can reach a log.
func readPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyCAKey, err)
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%s: %s: no PEM private key block (PKCS#8, EC or PKCS#1 RSA)", keyCAKey, path)
		}
		// "EC PARAMETERS" (written by openssl ecparam) and certificates
		// bundled with the key are skipped.
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		if len(b.Headers) > 0 && b.Headers["Proc-Type"] != "" {
			return nil, fmt.Errorf("%s: %s: encrypted keys are not supported", keyCAKey, path)
		}
		key, err := parsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", keyCAKey, path, err)
		}
		return key, nil
	}
}

// parsePrivateKey parses a PEM key block. Its messages name the format
// ("PKCS#8", "EC", "PKCS#1 RSA"), not the PEM block type.
func parsePrivateKey(b *pem.Block) (crypto.Signer, error) {
	var (
		format string
		key    any
		err    error
	)
	switch b.Type {
	case "PRIVATE KEY":
		format = "PKCS#8"
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		format = "EC"
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		format = "PKCS#1 RSA"
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("encrypted keys are not supported")
	default:
		return nil, errors.New("unsupported key type (want PKCS#8, EC or PKCS#1 RSA)")
	}
	if err != nil {
		// The parser's message is dropped on purpose (see readPrivateKey).
		return nil, fmt.Errorf("cannot parse the %s private key", format)
	}
	if s, ok := key.(crypto.Signer); ok {
		return s, nil
	}
	return nil, fmt.Errorf("the %s key is a %T, which cannot sign certificates", format, key)
}

// Certificate returns the leaf certificate for host, issuing it on first
// use and caching it. host is a DNS name (case-insensitive, a trailing dot
// ignored) or an IP literal without brackets, which gets an IP SAN instead
// of a DNS SAN. The result's Certificate chain is [leaf, CA] and its Leaf
// is set; callers must not modify it.
//
// Concurrent calls for a host not yet cached issue one leaf between them.
// A cached leaf that expires within 24 hours is issued again.
func (a *Authority) Certificate(host string) (*tls.Certificate, error) {
	name, ip, err := normalizeHost(host)
	if err != nil {
		return nil, err
	}
	now := a.now()
	if c, ok := a.cache.Get(name); ok && a.fresh(c, now) {
		a.hits.Add(1)
		return c, nil
	}

	a.mu.Lock()
	if cl, ok := a.mu.inflight[name]; ok {
		a.mu.Unlock()
		<-cl.done
		if cl.err == nil {
			a.hits.Add(1)
		}
		return cl.cert, cl.err
	}
	// Another caller may have finished issuing between the Get above and
	// the Lock (see the inflight comment).
	if c, ok := a.cache.Get(name); ok && a.fresh(c, now) {
		a.mu.Unlock()
		a.hits.Add(1)
		return c, nil
	}
	cl := &call{done: make(chan struct{})}
	a.mu.inflight[name] = cl
	a.mu.Unlock()

	cl.cert, cl.err = a.issue(name, ip, now)

	a.mu.Lock()
	if cl.err == nil {
		a.cache.Add(name, cl.cert)
	}
	delete(a.mu.inflight, name)
	a.mu.Unlock()
	close(cl.done)
	return cl.cert, cl.err
}

// fresh reports whether the cached leaf c can still be served at now: it
// does not expire within leafRenewal, or it already ends with the CA so a
// new one would not last longer.
func (a *Authority) fresh(c *tls.Certificate, now time.Time) bool {
	end := c.Leaf.NotAfter
	return !now.Add(leafRenewal).After(end) || !end.Before(a.ca.NotAfter)
}

// issue signs a new leaf for name (ip is valid for an IP literal).
func (a *Authority) issue(name string, ip netip.Addr, now time.Time) (*tls.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(leafLifetime)
	if notAfter.After(a.ca.NotAfter) {
		notAfter = a.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-leafBackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip.IsValid() {
		tmpl.IPAddresses = []net.IP{ip.AsSlice()}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.ca, a.leafKey.Public(), a.caKey)
	if err != nil {
		return nil, fmt.Errorf("mitm: issue certificate for %q: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("mitm: parse certificate for %q: %w", name, err)
	}
	a.issued.Add(1)
	return &tls.Certificate{
		Certificate: [][]byte{der, a.ca.Raw},
		PrivateKey:  a.leafKey,
		Leaf:        leaf,
	}, nil
}

// normalizeHost returns the cache key and SAN for host: an IP literal in
// canonical form (with ip set), or a lower-case DNS name without its
// trailing dot.
func normalizeHost(host string) (name string, ip netip.Addr, err error) {
	h := strings.TrimSuffix(host, ".")
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	if h == "" {
		return "", netip.Addr{}, errEmptyHost
	}
	// Only a name with a ':' or ending in a digit can be an IP literal;
	// skipping ParseAddr otherwise keeps a cache hit free of allocations
	// (its error is heap-allocated).
	if c := h[len(h)-1]; strings.IndexByte(h, ':') >= 0 || c >= '0' && c <= '9' {
		if addr, err := netip.ParseAddr(h); err == nil {
			addr = addr.WithZone("") // a zone has no meaning in a certificate
			return addr.String(), addr, nil
		}
	}
	h = strings.ToLower(h)
	if !validDNSName(h) {
		return "", netip.Addr{}, fmt.Errorf("%w: %q", errInvalidHost, host)
	}
	return h, netip.Addr{}, nil
}

// validDNSName reports whether s (lower case) is a plausible host name:
// at most 253 bytes of labels of 1 to 63 letters, digits, '-' or '_'
// (underscores occur in real service names, and SNI allows them through).
func validDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Stats returns the number of leaves issued and of cache hits since the
// Authority was created. Callers that waited for another caller's
// issuance count as hits.
func (a *Authority) Stats() (issued, hits uint64) {
	return a.issued.Load(), a.hits.Load()
}

// CA returns the CA certificate. Callers must not modify it.
func (a *Authority) CA() *x509.Certificate { return a.ca }
