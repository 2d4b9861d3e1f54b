// Package hostport is a request's destination, host and port, parsed once
// where the request enters the proxy (internal/proxy resolves its target)
// and handed as a value to everything that judges it: priority rules, hosts
// rules, the egress policy, tunnels (docs/architecture.md, "A request's
// path"). It knows nothing of HTTP beyond a URL's default ports.
package hostport

import (
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// HostPort is a destination. The zero value is no destination.
type HostPort struct {
	Host string // lower case; an IPv6 address without brackets
	Port int    // 1 to 65535
}

// Errors of New, Parse and FromURL. A port out of range is a *PortError.
var (
	ErrNoHost = errors.New("no host in request target")
	ErrNoPort = errors.New("no port")
)

// PortError is a port that is not a number from 1 to 65535.
type PortError struct{ Port string }

func (e *PortError) Error() string { return "port out of range: " + strconv.Quote(e.Port) }

// New validates a host and port as split from an authority: the host must
// not be empty; the port, when there is one, must be a number from 1 to
// 65535; an empty port is defaultPort (0: the port is required).
func New(host, port string, defaultPort int) (HostPort, error) {
	if host == "" {
		return HostPort{}, ErrNoHost
	}
	n := defaultPort
	if port != "" {
		var err error
		if n, err = strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return HostPort{}, &PortError{port}
		}
	}
	if n == 0 {
		return HostPort{}, ErrNoPort
	}
	return HostPort{Host: strings.ToLower(host), Port: n}, nil
}

// Parse parses an authority "host:port" (RFC 9112 §3.2.3, a CONNECT's
// target), both parts required, an IPv6 address in brackets.
func Parse(authority string) (HostPort, error) {
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		return HostPort{}, ErrNoPort
	}
	return New(host, port, 0)
}

// FromURL is the destination of an absolute URL: its host, and its port or
// the scheme's default (80, or 443 for https).
func FromURL(u *url.URL) (HostPort, error) {
	def := 80
	if u.Scheme == "https" {
		def = 443
	}
	return New(u.Hostname(), u.Port(), def)
}

// String is the destination as "host:port", an IPv6 address in brackets:
// the dispatcher's key for lanes, pauses and provider caps.
func (hp HostPort) String() string {
	// As net.JoinHostPort(hp.Host, strconv.Itoa(hp.Port)), in one
	// allocation: it is made once per request.
	var buf [80]byte
	b := buf[:0]
	if strings.IndexByte(hp.Host, ':') >= 0 {
		b = append(append(append(b, '['), hp.Host...), ']')
	} else {
		b = append(b, hp.Host...)
	}
	b = strconv.AppendInt(append(b, ':'), int64(hp.Port), 10)
	return string(b)
}
