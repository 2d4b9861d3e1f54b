package config

import (
	"errors"
	"testing"
)

// TestAdminAllowedHosts: each invalid admin.allowed_hosts entry is named
// by its index, with the reason; valid names pass.
func TestAdminAllowedHosts(t *testing.T) {
	for _, tt := range []struct {
		entry, want string // want "": valid
	}{
		{"proxyd.internal", ""},
		{"Proxyd-Admin.Example.COM", ""},
		{"proxyd", ""},
		{"localhost", ""},
		{"", "admin.allowed_hosts[1]: must not be empty"},
		{"http://proxyd.internal", `admin.allowed_hosts[1]: invalid host name "http://proxyd.internal": want a host name such as "proxyd.internal", not a URL or path`},
		{"proxyd.internal/admin", `admin.allowed_hosts[1]: invalid host name "proxyd.internal/admin": want a host name such as "proxyd.internal", not a URL or path`},
		{"proxyd.internal:9090", `admin.allowed_hosts[1]: invalid host name "proxyd.internal:9090": want a host name without a port (any port of the admin listener is accepted)`},
		{"proxyd.internal:", `admin.allowed_hosts[1]: invalid host name "proxyd.internal:": want a host name without a port (any port of the admin listener is accepted)`},
		{"10.0.0.5", `admin.allowed_hosts[1]: invalid host name "10.0.0.5": IP literals are always allowed; list host names only`},
		{"[::1]", `admin.allowed_hosts[1]: invalid host name "[::1]": IP literals are always allowed; list host names only`},
		{"::1", `admin.allowed_hosts[1]: invalid host name "::1": IP literals are always allowed; list host names only`},
		{"10.0.0.5:9090", `admin.allowed_hosts[1]: invalid host name "10.0.0.5:9090": want a host name without a port; IP literals such as "10.0.0.5" are always allowed`},
		{"[::1]:9090", `admin.allowed_hosts[1]: invalid host name "[::1]:9090": want a host name without a port; IP literals such as "::1" are always allowed`},
		{"*.internal", `admin.allowed_hosts[1]: invalid host name "*.internal": wildcards are not supported; list every name`},
		{"proxyd.internal.", `admin.allowed_hosts[1]: invalid host name "proxyd.internal.": host name must not end with "."`},
		{"bad host", `admin.allowed_hosts[1]: invalid host name "bad host": invalid character ' ' in host name`},
		{"1.2.3", `admin.allowed_hosts[1]: invalid host name "1.2.3": not a valid IPv4 address`},
		{"ADMIN.example", `admin.allowed_hosts[1]: "ADMIN.example" is listed twice (also admin.allowed_hosts[0])`},
	} {
		t.Run(tt.entry, func(t *testing.T) {
			c := Default()
			c.Admin.AllowedHosts = []string{"admin.example", tt.entry}
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
			var fe *FieldError
			if err != nil && (!errors.As(err, &fe) || fe.Key != "admin.allowed_hosts[1]") {
				t.Fatalf("error %v does not carry the key admin.allowed_hosts[1]", err)
			}
		})
	}
}
