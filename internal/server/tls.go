package server

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"sync"

	"github.com/proxyd/proxyd/internal/auth"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/mitm"
)

// Check reads the files cfg names (the interception CA, tls.upstream_ca,
// auth.htpasswd) as New and Reload do, without serving: check-config's
// last step. Errors name the key.
func Check(cfg config.Config) error {
	if _, _, err := loadTLS(cfg.TLS); err != nil {
		return err
	}
	_, err := loadUsers(cfg.Auth)
	return err
}

// loadTLS reads the files of the tls section (docs/configuration.md, "TLS interception"): the interception
// CA when tls.intercept is set, and the extra upstream roots of
// tls.upstream_ca. Errors name the key. It runs at start, on reload and in
// check-config.
func loadTLS(c config.TLS) (*mitm.Authority, []*x509.Certificate, error) {
	var auth *mitm.Authority
	if len(c.Intercept) > 0 {
		var err error
		if auth, err = mitm.LoadAuthority(c.CACert, c.CAKey, c.CertCacheSize); err != nil {
			return nil, nil, err
		}
	}
	roots, err := readUpstreamCA(c.UpstreamCA)
	if err != nil {
		return nil, nil, err
	}
	return auth, roots, nil
}

// loadUsers reads auth.htpasswd (docs/configuration.md, "Clients"); nil when it is not set.
func loadUsers(a config.Auth) (*auth.Users, error) {
	if a.Htpasswd == "" {
		return nil, nil
	}
	return auth.Load(a.Htpasswd)
}

// readUpstreamCA reads the certificates of a PEM file (tls.upstream_ca);
// "" is none.
func readUpstreamCA(path string) ([]*x509.Certificate, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls.upstream_ca: %w", err)
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls.upstream_ca: %s: certificate %d: %w", path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("tls.upstream_ca: %s: no PEM certificate in it", path)
	}
	return certs, nil
}

// certCounts keeps the leaf-certificate counters of TLS interception
// monotonic across reloads, which replace the Authority.
type certCounts struct {
	mu           sync.Mutex
	auth         *mitm.Authority
	issued, hits uint64 // of the Authorities replaced
}

func (c *certCounts) set(a *mitm.Authority) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.auth != nil && c.auth != a {
		i, h := c.auth.Stats()
		c.issued, c.hits = c.issued+i, c.hits+h
	}
	c.auth = a
}

func (c *certCounts) stats() (issued, hits uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	issued, hits = c.issued, c.hits
	if c.auth != nil {
		i, h := c.auth.Stats()
		issued, hits = issued+i, hits+h
	}
	return issued, hits
}
