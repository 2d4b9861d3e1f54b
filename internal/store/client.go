package store

// Connecting to Redis (docs/shared-quota.md, "Highly available Redis"):
// one node (redis.url), a master found through Sentinel
// (redis.sentinel.*) or a Redis Cluster (redis.cluster.addrs), each with
// TLS (rediss://, redis.tls.*) and ACL credentials (in the URL or
// redis.username / redis.password).
//
// Every variant is a go-redis client with the same settings: each call
// is bounded by redis.timeout (dial, read and write), never retried by
// go-redis (the lease loop calls again every Interval), dialed once per
// call (no dial back-off inside a call) and from a small pool (one lease
// loop and the occasional SetLimits share it).
//
// # Recovery
//
// go-redis's pool has a dial circuit breaker: after PoolSize failed dials
// (counted over the pool's whole life, not in a row) it fails every call
// at once with the last dial error, and a background probe dials the
// address once a second until one succeeds. So after a restart, a
// failover or a network cut, the store would stay unused for up to a
// second after Redis answers again (measured before this: 26–936 ms over
// 25 restarts). The lease loop already calls every Interval (5 ms) while
// the store is down, which is the probe the store wants. So the dialer
// answers the breaker's probe at once with a connection the probe only
// closes: the breaker closes again, and the loop's own calls find out
// whether Redis answers (within one Interval of it answering, plus a dial).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/proxyd/proxyd/internal/config"
)

// poolSize is the connections per Redis node: the lease loop and a
// concurrent SetLimits.
const poolSize = 4

// newClient builds the client for cfg (which passed config validation):
// it connects nothing yet. Errors name the key at fault and never show a
// password.
func newClient(cfg config.Redis, d *dialer) (redis.UniversalClient, error) {
	tc, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	d.tls, d.caFile, d.timeout = tc, cfg.TLS.CACert, cfg.Timeout
	switch {
	case len(cfg.Cluster.Addrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:    cfg.Cluster.Addrs,
			Username: cfg.Username, Password: cfg.Password,
			Dialer:      d.dial,
			DialTimeout: cfg.Timeout, ReadTimeout: cfg.Timeout, WriteTimeout: cfg.Timeout,
			MaxRetries: -1, DialerRetries: 1, PoolSize: poolSize,
			DisableIdentity: true,
			// While a slot moves, a multi-key call gets TRYAGAIN until
			// its keys are on one node: retry soon and often enough to
			// get through within redis.timeout (MOVED and ASK are
			// followed at once, without back-off).
			MaxRedirects: 8, MinRetryBackoff: 2 * time.Millisecond, MaxRetryBackoff: 16 * time.Millisecond,
		}), nil
	case cfg.Sentinel.Master != "":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       cfg.Sentinel.Master,
			SentinelAddrs:    cfg.Sentinel.Addrs,
			SentinelPassword: cfg.Sentinel.Password,
			Username:         cfg.Username, Password: cfg.Password,
			Dialer:      d.dial,
			DialTimeout: cfg.Timeout, ReadTimeout: cfg.Timeout, WriteTimeout: cfg.Timeout,
			MaxRetries: -1, DialerRetries: 1, PoolSize: poolSize,
			DisableIdentity: true,
		}), nil
	}
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %s", redactSecrets(err.Error(), cfg))
	}
	if cfg.Username != "" {
		opt.Username = cfg.Username
	}
	if cfg.Password != "" {
		opt.Password = cfg.Password
	}
	if opt.TLSConfig != nil {
		// rediss://: ParseURL named the server (and read skip_verify);
		// redis.tls.* adds the roots and the client certificate.
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tc.ServerName, tc.InsecureSkipVerify = opt.TLSConfig.ServerName, opt.TLSConfig.InsecureSkipVerify
		d.tls = tc
	}
	opt.TLSConfig = nil // the dialer does TLS (d.tls)
	opt.Dialer = d.dial
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = cfg.Timeout, cfg.Timeout, cfg.Timeout
	opt.MaxRetries = -1 // a retry would blow the deadline; the loop retries
	opt.DialerRetries = 1
	opt.PoolSize = poolSize
	opt.DisableIdentity = true
	return redis.NewClient(opt), nil
}

// tlsConfig is the TLS configuration of redis.tls.*; nil when no file is
// set (rediss:// alone uses the system roots).
func tlsConfig(cfg config.Redis) (*tls.Config, error) {
	t := cfg.TLS
	if !t.Enabled() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CACert != "" {
		pem, err := os.ReadFile(t.CACert)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_cert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_cert: no PEM certificate in %s", t.CACert)
		}
	}
	if t.Cert != "" || t.Key != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.cert / redis.tls.key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// dialer dials every connection of one Store's client: to Redis, to the
// sentinels and to every Cluster node.
type dialer struct {
	timeout time.Duration
	tls     *tls.Config // nil: plain TCP
	caFile  string      // redis.tls.ca_cert, for errors
	// probes counts the breaker probes answered at once (see the file
	// comment).
	probes atomic.Int64
}

func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if breakerProbe() {
		d.probes.Add(1)
		c, peer := net.Pipe()
		_ = peer.Close()
		return c, nil
	}
	nd := &net.Dialer{Timeout: d.timeout, KeepAlive: 15 * time.Second}
	if d.tls == nil {
		return nd.DialContext(ctx, network, addr)
	}
	// An empty ServerName is the host of addr (Sentinel and Cluster reach
	// several servers through one configuration).
	c, err := (&tls.Dialer{NetDialer: nd, Config: d.tls}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, d.explainTLS(addr, err)
	}
	return c, nil
}

// explainTLS names the key behind a failed TLS handshake.
func (d *dialer) explainTLS(addr string, err error) error {
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	switch {
	case errors.As(err, &unknown) || errors.As(err, &verify):
		if d.caFile == "" {
			return fmt.Errorf("TLS to %s: the server's certificate is not trusted by the system roots (set redis.tls.ca_cert to its CA): %w", addr, err)
		}
		return fmt.Errorf("TLS to %s: the server's certificate is not signed by redis.tls.ca_cert (%s): %w", addr, d.caFile, err)
	case errors.As(err, &alert):
		return fmt.Errorf("TLS to %s: the server refused the handshake (does it want a client certificate, redis.tls.cert and redis.tls.key?): %w", addr, err)
	}
	return fmt.Errorf("TLS to %s: %w", addr, err)
}

// breakerProbe reports whether the dial comes from go-redis's dial
// circuit breaker probe (internal/pool's ConnPool.tryDial). It is only
// asked on a dial, never per call. If go-redis renames the probe, dials
// simply go through: recovery takes up to a second again, which
// TestRestartRecovery would report.
func breakerProbe() bool {
	var pcs [48]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "/internal/pool.(*ConnPool).tryDial") && strings.Contains(f.Function, "go-redis") {
			return true
		}
		if !more {
			return false
		}
	}
}

// explain adds what to check to the errors of a misconfigured store (an
// ACL user without a command proxyd needs, refused credentials).
func explain(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "NOPERM"), strings.Contains(msg, "can't run this command"):
		return fmt.Errorf("the Redis user (redis.username, or the URL's) lacks a command or key proxyd needs (docs/shared-quota.md, \"ACL\"): %w", err)
	case strings.Contains(msg, "remote error: tls"):
		// TLS 1.3: a refused client certificate shows on the first read.
		return fmt.Errorf("the Redis server refused the TLS session (does it want a client certificate, redis.tls.cert and redis.tls.key?): %w", err)
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "invalid password"):
		return fmt.Errorf("Redis refused the credentials (redis.username / redis.password, or the URL's): %w", err)
	}
	return err
}

// redactSecrets removes the passwords of cfg from msg.
func redactSecrets(msg string, cfg config.Redis) string {
	for _, p := range []string{cfg.Password, cfg.Sentinel.Password, urlPassword(cfg.URL)} {
		if p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// urlPassword is the password in a redis:// URL, "" without one.
func urlPassword(u string) string {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		return ""
	}
	userinfo, _, ok := strings.Cut(rest, "@")
	if !ok {
		return ""
	}
	_, pw, _ := strings.Cut(userinfo, ":")
	return pw
}
