package admin

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"go.uber.org/zap"

	"github.com/proxyd/proxyd/internal/config"
)

// hostCheck decides which Host headers the admin listener answers: a
// defence against DNS rebinding (docs/admin-api.md, "Host check"). A web
// page that gets its own name (attacker.example) to resolve to 127.0.0.1
// can make the browser send requests to the admin listener, but the
// browser still sends "Host: attacker.example", which is refused here.
//
// Answered: an IP literal (IPv4, or IPv6 in brackets, RFC 3986 §3.2.2),
// "localhost", or a name in admin.allowed_hosts, each with or without a
// port (any port: the listener is the one it arrived on); names compare
// ASCII case-insensitively, with or without one trailing dot (the
// absolute form of the same name, RFC 1034 §3.1). An empty Host (HTTP/1.0
// without one, or "Host:" with no value) is answered too: no browser
// sends one, and the target is then the listener's own authority (RFC
// 9112 §3.3).
//
// The zero value answers IP literals and localhost only. It is read-only
// after newHostCheck, so safe for concurrent use.
type hostCheck struct {
	names map[string]bool // lower-case, no trailing dot
}

// newHostCheck returns the check for admin.allowed_hosts (validated by
// config.CheckAdminHost; an entry that is not a valid name never matches).
func newHostCheck(allowed []string) hostCheck {
	h := hostCheck{names: make(map[string]bool, len(allowed))}
	for _, n := range allowed {
		h.names[asciiLower(n)] = true
	}
	return h
}

// allowed reports whether the admin listener answers a request whose Host
// (http.Request.Host: the Host header, or the authority of an
// absolute-form request target) is hostport.
func (h hostCheck) allowed(hostport string) bool {
	if hostport == "" {
		return true
	}
	host, bracketed, ok := splitHostPort(hostport)
	if !ok {
		return false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		// IPv6 only in brackets, IPv4 only without.
		return a.Is6() == bracketed
	}
	if bracketed {
		return false
	}
	name := asciiLower(strings.TrimSuffix(host, "."))
	return name == "localhost" || h.names[name]
}

// splitHostPort splits a Host value into the host, without brackets, and
// an optional port (RFC 3986 §3.2.3: digits, possibly none). ok is false
// for anything else: a missing "]", something after it other than a
// port, or an IPv6 address without brackets.
func splitHostPort(hostport string) (host string, bracketed, ok bool) {
	port := ""
	if rest, isV6 := strings.CutPrefix(hostport, "["); isV6 {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", false, false
		}
		host, bracketed = rest[:end], true
		if after := rest[end+1:]; after != "" {
			if after[0] != ':' {
				return "", false, false
			}
			port = after[1:]
		}
	} else {
		host, port, _ = strings.Cut(hostport, ":")
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return "", false, false
		}
	}
	return host, bracketed, true
}

// asciiLower lower-cases ASCII letters only, so that no other character
// folds into an allowed name (strings.ToLower maps the Kelvin sign to
// "k").
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// misdirected answers a request whose Host the listener does not answer:
// 421 (RFC 9110 §15.5.20) with a text body that names the Host and, when
// it is a name that could be listed, the key that would allow it.
func (s *Server) misdirected(w http.ResponseWriter, r *http.Request) {
	msg := fmt.Sprintf("misdirected request: this admin listener answers only requests whose Host is an IP address, localhost or a name in admin.allowed_hosts; got Host %s", quote(r.Host))
	if host, bracketed, ok := splitHostPort(r.Host); ok && !bracketed {
		if name := strings.TrimSuffix(host, "."); config.CheckAdminHost(name) == nil {
			msg += fmt.Sprintf(" (to allow it, add %s to admin.allowed_hosts)", quote(asciiLower(name)))
		}
	}
	s.log.Info("admin request refused: Host not allowed",
		zap.String("host", clip(r.Host, maxQuote)),
		zap.String("method", r.Method),
		zap.String("path", clip(r.URL.Path, maxQuote)),
		zap.String("remote", r.RemoteAddr))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	text(w, http.StatusMisdirectedRequest, msg+"\n")
}
