package config

// Kubernetes service links. The kubelet gives every container, unless its
// pod sets enableServiceLinks: false, variables for every Service of the
// namespace, named after the Service (upper-cased, '-' → '_'). For a Service
// "proxyd" with ClusterIP 10.96.0.10 and ports proxy 8080 and admin 9090:
//
//	PROXYD_SERVICE_HOST=10.96.0.10
//	PROXYD_SERVICE_PORT=8080                  the first port
//	PROXYD_SERVICE_PORT_PROXY=8080            one per named port
//	PROXYD_SERVICE_PORT_ADMIN=9090
//	PROXYD_PORT=tcp://10.96.0.10:8080         the first port, Docker-links style
//	PROXYD_PORT_8080_TCP=tcp://10.96.0.10:8080
//	PROXYD_PORT_8080_TCP_PROTO=tcp
//	PROXYD_PORT_8080_TCP_PORT=8080
//	PROXYD_PORT_8080_TCP_ADDR=10.96.0.10
//	PROXYD_PORT_9090_TCP=tcp://10.96.0.10:9090 (and its _PROTO, _PORT, _ADDR)
//
// They share proxyd's PROXYD_ prefix but are not configuration: the loader
// skips them (docs/configuration.md, "Environment variables"). It skips
// only a name of that form whose value also has the form the kubelet
// writes, so PROXYD_PORT=8081, set by someone who meant the listen port,
// is still an unknown variable and stops start-up.

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// serviceLinkName matches the names of the kubelet's service-link
// variables for a Service named proxyd; the submatches are the port
// number, the protocol and the suffix of PROXYD_PORT_<port>_<proto>_*.
var serviceLinkName = regexp.MustCompile(`^PROXYD_(?:SERVICE_HOST|SERVICE_PORT|SERVICE_PORT_[A-Z0-9_]+|PORT|PORT_([0-9]+)_(TCP|UDP|SCTP)(?:_(PROTO|PORT|ADDR))?)$`)

// IsServiceLink reports whether name=value is a variable the kubelet adds
// for a Service named proxyd (see the top of this file): Load skips it.
func IsServiceLink(name, value string) bool {
	m := serviceLinkName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	port, proto, suffix := m[1], strings.ToLower(m[2]), m[3]
	switch {
	case name == "PROXYD_SERVICE_HOST":
		return isIP(value)
	case strings.HasPrefix(name, "PROXYD_SERVICE_PORT"):
		return isPort(value)
	case name == "PROXYD_PORT":
		return isLinkURL(value, "", "")
	case suffix == "":
		return isPort(port) && isLinkURL(value, proto, port)
	case suffix == "PROTO":
		return isPort(port) && value == proto
	case suffix == "PORT":
		return isPort(port) && value == port
	default: // ADDR
		return isPort(port) && isIP(value)
	}
}

// isLinkURL reports whether v is "proto://clusterIP:port", as the kubelet
// writes it (net.JoinHostPort: brackets around an IPv6 address). An empty
// proto or port accepts any.
func isLinkURL(v, proto, port string) bool {
	scheme, hostPort, ok := strings.Cut(v, "://")
	if !ok || (proto != "" && scheme != proto) || (scheme != "tcp" && scheme != "udp" && scheme != "sctp") {
		return false
	}
	host, p, err := net.SplitHostPort(hostPort)
	return err == nil && isIP(host) && isPort(p) && (port == "" || p == port)
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// isPort reports whether s is a port number in decimal, 1 to 65535,
// without a leading zero.
func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == s
}

// serviceLinkHint explains, for an unknown variable that has the name but
// not the value of a service link, why it was not skipped; "" otherwise.
func serviceLinkHint(name string) string {
	if !serviceLinkName.MatchString(name) {
		return ""
	}
	return " (not a Kubernetes service link, whose value would look like tcp://10.96.0.10:8080; proxyd's listen addresses are PROXYD_LISTEN and PROXYD_ADMIN_LISTEN)"
}
