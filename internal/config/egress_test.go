package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseEgressEntry(t *testing.T) {
	tests := []struct {
		in     string
		prefix string // "" = a host entry
		host   string
		port   int
		str    string // canonical form; "" = in
	}{
		{in: "10.1.0.0/16", prefix: "10.1.0.0/16"},
		{in: "10.1.0.0/16:8080", prefix: "10.1.0.0/16", port: 8080},
		{in: "[fd00::/8]:443", prefix: "fd00::/8", port: 443},
		{in: "fd00::/8", prefix: "fd00::/8"},
		{in: "::ffff:10.0.0.0/104", prefix: "10.0.0.0/8", str: "10.0.0.0/8"},
		{in: "192.0.2.7", prefix: "192.0.2.7/32"},
		{in: "192.0.2.7:443", prefix: "192.0.2.7/32", port: 443},
		{in: "::ffff:192.0.2.7", prefix: "192.0.2.7/32", str: "192.0.2.7"},
		{in: "[2001:db8::1]:443", prefix: "2001:db8::1/128", port: 443},
		{in: "::1", prefix: "::1/128"},
		{in: "api.corp.example", host: "api.corp.example"},
		{in: "API.Corp.Example", host: "api.corp.example", str: "api.corp.example"},
		{in: "*.corp.example:8443", host: "*.corp.example", port: 8443},
		{in: "localhost", host: "localhost"},
	}
	for _, tt := range tests {
		e, err := ParseEgressEntry(tt.in)
		if err != nil {
			t.Errorf("ParseEgressEntry(%q): %v", tt.in, err)
			continue
		}
		if tt.prefix != "" {
			if e.Prefix != netip.MustParsePrefix(tt.prefix) || e.Host != (HostPattern{}) {
				t.Errorf("%q: prefix %v host %+v, want prefix %s", tt.in, e.Prefix, e.Host, tt.prefix)
			}
		} else if e.Prefix.IsValid() || e.Host.String() != tt.host {
			t.Errorf("%q: prefix %v host %q, want host %q", tt.in, e.Prefix, e.Host, tt.host)
		}
		if e.Port != tt.port {
			t.Errorf("%q: port %d, want %d", tt.in, e.Port, tt.port)
		}
		want := tt.str
		if want == "" {
			want = tt.in
		}
		if e.String() != want {
			t.Errorf("%q: String() = %q, want %q", tt.in, e.String(), want)
		}
	}
}

func TestParseEgressEntryErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "must not be empty"},
		{" 10.0.0.0/8", "blanks"},
		{"10.0.0.1/8", `did you mean "10.0.0.0/8"`},
		{"10.0.0.0/33", "invalid CIDR"},
		{"10.0.0.0/8:0", "port must be a number from 1 to 65535"},
		{"10.0.0.0/8:65536", "port must be a number from 1 to 65535"},
		{"10.0.0.0/8:", "port must be"},
		{"[fd00::/8", `missing "]"`},
		{"[fd00::/8]443", `want "[prefix]:port"`},
		{"fd00::/8:443", "invalid CIDR"},
		{"*", ""},
		{"a.*.example", ""},
		{"*.10.0.0.1", ""},
		{"host:0", ""},
		{"fe80::1%eth0", ""},
	}
	for _, tt := range tests {
		_, err := ParseEgressEntry(tt.in)
		if err == nil {
			t.Errorf("ParseEgressEntry(%q) accepted it", tt.in)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseEgressEntry(%q) = %q, want it to say %q", tt.in, err, tt.want)
		}
	}
}

func TestEgressCheckNamesKeys(t *testing.T) {
	c := Default()
	c.Egress = Egress{Allow: []string{"127.0.0.1", "10.0.0.1/8"}, Deny: []string{"*bad"}, ConnectPorts: []int{443, 0}}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad egress entries")
	}
	for _, want := range []string{"egress.allow[1]:", "egress.deny[0]:", "egress.connect_ports[1]: must be a port from 1 to 65535, got 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestEgressEntryMatch(t *testing.T) {
	must := func(s string) EgressEntry {
		e, err := ParseEgressEntry(s)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	a := netip.MustParseAddr
	if e := must("10.0.0.0/8:443"); !e.MatchAddr(a("10.2.3.4"), 443) || e.MatchAddr(a("10.2.3.4"), 80) || !e.MatchAddr(a("::ffff:10.2.3.4"), 443) || e.MatchHost("10.2.3.4", 443) {
		t.Error("10.0.0.0/8:443 matches wrongly")
	}
	if e := must("*.corp.example"); !e.MatchHost("a.b.corp.example", 1) || e.MatchHost("corp.example", 1) || e.MatchAddr(a("10.0.0.1"), 1) {
		t.Error("*.corp.example matches wrongly")
	}
	if e := must("fe80::/10"); !e.MatchAddr(a("fe80::1%eth0"), 80) {
		t.Error("fe80::/10 does not match an address with a zone")
	}
}

// FuzzParseEgressEntry: the parser never panics, and an accepted entry's
// canonical form parses back to the same entry.
func FuzzParseEgressEntry(f *testing.F) {
	for _, s := range []string{
		"10.1.0.0/16", "10.1.0.0/16:8080", "[fd00::/8]:443", "fd00::/8", "192.0.2.7", "[2001:db8::1]:443",
		"api.corp.example", "*.corp.example:8443", "::ffff:10.0.0.0/104", "10.0.0.1/8", "[fd00::/8", "[::]:0",
		"host:", "*", "a..b", "[::ffff:1.2.3.4]:1", "1.2.3.4/0", "::/0", "x:65535", "ü.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEgressEntry(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("%q: empty error", s)
			}
			return
		}
		if e.Prefix.IsValid() == (e.Host != HostPattern{}) {
			t.Fatalf("%q: want exactly one of prefix and host: %+v", s, e)
		}
		if e.Port < 0 || e.Port > 65535 {
			t.Fatalf("%q: port %d", s, e.Port)
		}
		again, err := ParseEgressEntry(e.String())
		if err != nil {
			t.Fatalf("%q: canonical form %q does not parse: %v", s, e.String(), err)
		}
		if again != e {
			t.Fatalf("%q: canonical form %q parses to %+v, want %+v", s, e.String(), again, e)
		}
		// Matching never panics.
		e.MatchAddr(netip.MustParseAddr("10.0.0.1"), e.Port)
		e.MatchHost("a.example", e.Port)
	})
}

func TestTLSCheck(t *testing.T) {
	c := Default()
	c.TLS = TLS{Intercept: []string{"api.example.com", "*", "*.bad*", "x:0"}, CertCacheSize: 0}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad tls section")
	}
	for _, want := range []string{"tls.intercept[2]:", "tls.intercept[3]:", "tls.ca_cert: is required when tls.intercept is not empty", "tls.ca_key: is required", "tls.cert_cache_size: must be at least 1, got 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "tls.intercept[1]") {
		t.Errorf(`"*" (every host) was refused: %v`, err)
	}
	c.TLS = TLS{Intercept: []string{"*", "*.example.com:8443"}, CACert: "ca.pem", CAKey: "ca-key.pem", CertCacheSize: 1}
	if err := c.Validate(); err != nil {
		t.Fatalf("a valid tls section: %v", err)
	}
	pats, all, err := c.TLS.InterceptPatterns()
	if err != nil || !all || len(pats) != 1 || !pats[0].Match("a.example.com", 8443) || pats[0].Match("a.example.com", 443) {
		t.Fatalf("InterceptPatterns: %v %v %v", pats, all, err)
	}
	c.TLS = TLS{CAKey: "k.pem", CertCacheSize: 1}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tls.ca_cert: is required with tls.ca_key") {
		t.Fatalf("a key without a certificate: %v", err)
	}
}

func TestClientsCheck(t *testing.T) {
	c := Default()
	c.Fairness = "round-robin"
	c.Clients = []Client{{Name: ""}, {Name: "10.0.0.1/8"}, {Name: "alice"}, {Name: "10.1.0.0/16", MaxPriority: ptrInt(9), QueueSize: -1}, {Name: "10.1.0.0/16"}}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad clients")
	}
	for _, want := range []string{
		`fairness: must be none or client, got "round-robin"`,
		"clients[0].name: must not be empty",
		`clients[1].name: invalid CIDR "10.0.0.1/8": host bits are set`,
		`clients[2].name: "alice" is a user name, but auth.htpasswd is not set`,
		"clients[3].max_priority: must be 0 to 7, got 9",
		"clients[3].queue_size: must be >= 0, got -1",
		`clients[4].name: "10.1.0.0/16" is also clients[3]`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	c = Default()
	c.Auth.Htpasswd = "users.htpasswd"
	c.Fairness = FairnessClient
	c.Clients = []Client{{Name: "alice", MaxPriority: ptrInt(2), QueueSize: 100}, {Name: "10.0.0.0/8"}, {Name: "192.0.2.7"}}
	c.Priority.Rules = []PriorityRule{{User: "batch", Priority: ptrInt(6)}}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid clients: %v", err)
	}
	if p, ok := ClientPrefix("::ffff:10.0.0.0/104"); !ok || p.String() != "10.0.0.0/8" {
		t.Errorf("ClientPrefix of a mapped CIDR: %v %v", p, ok)
	}
	if _, ok := ClientPrefix("alice"); ok {
		t.Error("a user name parsed as a prefix")
	}
}

func ptrInt(v int) *int { return &v }
