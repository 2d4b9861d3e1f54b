package config

import "fmt"

// TLS configures TLS interception of CONNECT tunnels (docs/tls-interception.md).
type TLS struct {
	// Intercept lists the host patterns (hosts[].match syntax; "*" is
	// every host) whose CONNECT tunnels are decrypted, so that each request
	// inside is scheduled like a plain one.
	Intercept []string `mapstructure:"intercept" yaml:"intercept"`
	// CACert and CAKey are the PEM files of proxyd's signing CA (proxyd ca
	// init writes them); required when Intercept is not empty.
	CACert string `mapstructure:"ca_cert" yaml:"ca_cert"`
	CAKey  string `mapstructure:"ca_key" yaml:"ca_key"`
	// UpstreamCA is a PEM file of extra roots trusted for upstream
	// certificates, on top of the system roots.
	UpstreamCA string `mapstructure:"upstream_ca" yaml:"upstream_ca"`
	// CertCacheSize is how many leaf certificates are kept in memory.
	CertCacheSize int `mapstructure:"cert_cache_size" yaml:"cert_cache_size"`
}

// InterceptAll is the tls.intercept entry that matches every host.
const InterceptAll = "*"

// InterceptPatterns parses tls.intercept; all reports a "*" entry. The
// entries should have passed Validate.
func (t TLS) InterceptPatterns() (patterns []HostPattern, all bool, err error) {
	for i, s := range t.Intercept {
		if s == InterceptAll {
			all = true
			continue
		}
		hp, err := ParseHostPattern(s)
		if err != nil {
			return nil, false, &FieldError{Key: fmt.Sprintf("tls.intercept[%d]", i), Err: err}
		}
		patterns = append(patterns, hp)
	}
	return patterns, all, nil
}

// check validates the TLS section; the files themselves are read (and
// their errors named) when the interception is built.
func (t TLS) check(p *problems) {
	for i, s := range t.Intercept {
		if s == InterceptAll {
			continue
		}
		if _, err := ParseHostPattern(s); err != nil {
			p.addErr(fmt.Sprintf("tls.intercept[%d]", i), err)
		}
	}
	if len(t.Intercept) > 0 {
		if t.CACert == "" {
			p.add("tls.ca_cert", "is required when tls.intercept is not empty (create a CA with: proxyd ca init --out DIR)")
		}
		if t.CAKey == "" {
			p.add("tls.ca_key", "is required when tls.intercept is not empty (create a CA with: proxyd ca init --out DIR)")
		}
	}
	if (t.CACert == "") != (t.CAKey == "") {
		if t.CACert == "" {
			p.add("tls.ca_cert", "is required with tls.ca_key")
		} else {
			p.add("tls.ca_key", "is required with tls.ca_cert")
		}
	}
	if t.CertCacheSize < 1 {
		p.add("tls.cert_cache_size", "must be at least 1, got %d", t.CertCacheSize)
	}
}
