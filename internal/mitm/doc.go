// Package mitm is proxyd's own certificate authority for TLS interception
// of CONNECT tunnels (docs/tls-interception.md).
//
// InitCA creates the signing CA that `proxyd ca init` writes (ECDSA P-256,
// CA:true with path length 0, valid 10 years) and TrustInstructions says
// how to make clients trust it. LoadAuthority reads it back from the files
// named by tls.ca_cert and tls.ca_key, and the resulting Authority issues
// one leaf certificate per intercepted host name, which the tunnel's
// tls.Config serves through GetCertificate.
//
// # One leaf key
//
// Every leaf of an Authority carries the same ECDSA P-256 key, generated
// once in NewAuthority and held only in memory. Issuing a leaf then costs
// one signature by the CA key instead of a key generation plus a signature,
// which is what mitmproxy does too. Sharing the key costs nothing in
// security: every leaf is held by the same process, which holds the CA key
// as well, so a stolen leaf key means a stolen process anyway. A restart
// generates a new leaf key.
//
// # Cache
//
// Leaves are kept in a least-recently-used cache of tls.cert_cache_size
// entries keyed by the normalised host (lower case, no trailing dot, IP
// literals in canonical form). Concurrent requests for a host that is not
// cached issue one leaf between them; the others wait for it. A leaf lives
// for 30 days (never past the CA's own NotAfter) and is issued again once a
// cache hit finds it expiring within 24 hours, unless it already ends with
// the CA, where a new one could not last longer.
//
// # Key material
//
// Private keys are never logged, served, or put into an error: errors about
// the key file name the config key (tls.ca_key) and the file, and say what
// is wrong in words, never by quoting the file's content.
//
// An Authority is safe for concurrent use.
package mitm
