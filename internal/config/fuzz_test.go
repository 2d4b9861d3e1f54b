package config

import (
	"strings"
	"testing"
)

// FuzzParseHostPattern: ParseHostPattern never panics; a pattern it
// accepts has a canonical form (String) that parses back to the same
// pattern, is the same pattern whatever the case of the input, and
// matches as documented: a name or address matches itself (any port, or
// its own), a wildcard matches a subdomain and never its apex. host is any
// request host: Match agrees with the ASCII-only comparison DNS names
// have (RFC 4343 §3: case-insensitivity is for ASCII letters only).
func FuzzParseHostPattern(f *testing.F) {
	for _, s := range []string{
		"api.example.com", "API.Example.COM:8443", "*.example.com", "*.example.com:443", "localhost",
		"10.0.0.1:80", "2001:DB8::1", "[2001:db8::1]", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80",
		"", "*", "*.", "a.*.com", "[::1]x", "[10.0.0.1]:80", "a.com:-1", "a.com:+1", "a.com:1:2x",
		"a.com:0", "a.com:65536", "a.com:00443", "*.10.0.0.1", "fe80::1%eth0", "[fe80::1%eth0]:1",
		"a..b", "-a.com", "a_b.example", "1.2.3", "a.com.", "http://a.com", strings.Repeat("a", 64) + ".com",
	} {
		f.Add(s, "x."+s, uint16(443))
	}
	f.Add("k8s.internal", "\u212a8s.internal", uint16(0))
	f.Fuzz(func(t *testing.T, s, host string, portN uint16) {
		port := int(portN)
		p, err := ParseHostPattern(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseHostPattern(%q): empty error", s)
			}
			return
		}
		canon := p.String()
		q, err := ParseHostPattern(canon)
		if err != nil || q != p {
			t.Fatalf("ParseHostPattern(%q) = %+v, whose String %q parses to %+v, %v", s, p, canon, q, err)
		}
		if again := q.String(); again != canon {
			t.Fatalf("String not stable: %q then %q", canon, again)
		}
		if up, err := ParseHostPattern(asciiUpper(s)); err != nil || up != p {
			t.Fatalf("ParseHostPattern(%q) = %+v, %v; of %q it is %+v", asciiUpper(s), up, err, s, p)
		}
		if p.Host == "" || p.Host != strings.ToLower(p.Host) || p.Port < 0 || p.Port > 65535 {
			t.Fatalf("ParseHostPattern(%q) = %+v: want a lower-case host and a port of 0 to 65535", s, p)
		}

		own := p.Port
		if own == 0 {
			own = port
		}
		if p.Port != 0 {
			h, other := p.Host, p.Port%65535+1
			if p.Wildcard {
				h = "x." + h
			}
			if p.Match(h, other) {
				t.Fatalf("%q matches %q on port %d", canon, h, other)
			}
		}
		if !p.Wildcard {
			for _, h := range []string{p.Host, asciiUpper(p.Host), p.Host + "."} {
				if !p.Match(h, own) {
					t.Fatalf("%q does not match its own host %q on port %d", canon, h, own)
				}
			}
		} else {
			for _, h := range []string{p.Host, p.Host + ".", "." + p.Host} {
				if p.Match(h, own) {
					t.Fatalf("wildcard %q matches %q (its apex)", canon, h)
				}
			}
			for _, h := range []string{"x." + p.Host, "A.b." + asciiUpper(p.Host) + "."} {
				if !p.Match(h, own) {
					t.Fatalf("wildcard %q does not match %q on port %d", canon, h, own)
				}
			}
		}

		if got, want := p.Match(host, port), refMatch(p, host, port); got != want {
			t.Fatalf("%q.Match(%q, %d) = %v, want %v", canon, host, port, got, want)
		}
	})
}

// refMatch is HostPattern.Match as documented, written plainly: the port
// (when the pattern has one) equal; the host, less one trailing dot,
// equal to the pattern's under ASCII case folding, or (a wildcard) ending
// in "." and the pattern's host after at least one byte.
func refMatch(p HostPattern, host string, port int) bool {
	if p.Port != 0 && p.Port != port {
		return false
	}
	h := asciiLowerRef(strings.TrimSuffix(host, "."))
	if !p.Wildcard {
		return h == p.Host
	}
	return len(h) > len(p.Host)+1 && strings.HasSuffix(h, "."+p.Host)
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func asciiLowerRef(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}
