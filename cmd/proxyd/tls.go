package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/proxyd/proxyd/internal/auth"
	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/mitm"
)

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

// newCACmd is `proxyd ca init --out DIR`.
func newCACmd(stdout interface{ Write([]byte) (int, error) }) *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Manage the certificate authority of TLS interception",
	}
	var out string
	initCmd := &cobra.Command{
		Use:   "init --out DIR",
		Short: "Create a signing CA for tls.intercept: DIR/ca.pem and DIR/ca-key.pem",
		Long: `init writes a new ECDSA P-256 certificate authority (CA:true, path length 0,
valid 10 years) to DIR/ca.pem and its key to DIR/ca-key.pem (mode 0600), and
prints how to make clients trust it. It never overwrites existing files.`,
		Args: fileArgHint,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &configError{errors.New("ca init: --out DIR is required")}
			}
			certPath, keyPath, err := mitm.InitCA(out, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote %s and %s\n\nConfigure proxyd:\n\n  tls:\n    intercept: [\"api.example.com\"]\n    ca_cert: %s\n    ca_key: %s\n\n%s", certPath, keyPath, certPath, keyPath, mitm.TrustInstructions(certPath))
			return nil
		},
	}
	initCmd.Flags().StringVar(&out, "out", "", "directory to write ca.pem and ca-key.pem to (created if missing)")
	ca.AddCommand(initCmd)
	return ca
}
