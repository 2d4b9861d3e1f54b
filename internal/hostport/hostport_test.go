package hostport

import (
	"errors"
	"net/url"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want HostPort
		err  error
	}{
		{"API.example.com:443", HostPort{"api.example.com", 443}, nil},
		{"[2001:DB8::1]:8443", HostPort{"2001:db8::1", 8443}, nil},
		{"example.com", HostPort{}, ErrNoPort},
		{"example.com:", HostPort{}, ErrNoPort},
		{":443", HostPort{}, ErrNoHost},
		{"example.com:0", HostPort{}, &PortError{"0"}},
		{"example.com:65536", HostPort{}, &PortError{"65536"}},
		{"example.com:http", HostPort{}, &PortError{"http"}},
	} {
		got, err := Parse(tc.in)
		if got != tc.want || !sameErr(err, tc.err) {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestFromURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"http://Example.com/x", "example.com:80"},
		{"https://example.com/x", "example.com:443"},
		{"https://example.com:8443/x", "example.com:8443"},
		{"http://[::1]:9000/", "[::1]:9000"},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		hp, err := FromURL(u)
		if err != nil || hp.String() != tc.want {
			t.Errorf("FromURL(%q) = %v, %v; want %s", tc.in, hp, err, tc.want)
		}
	}
	if _, err := FromURL(&url.URL{Scheme: "http", Path: "/x"}); !errors.Is(err, ErrNoHost) {
		t.Errorf("no host: %v, want ErrNoHost", err)
	}
}

func sameErr(got, want error) bool {
	var pg, pw *PortError
	if errors.As(want, &pw) {
		return errors.As(got, &pg) && *pg == *pw
	}
	return errors.Is(got, want)
}

func BenchmarkFromURL(b *testing.B) {
	u, _ := url.Parse("http://api.example.com:8080/v1/items")
	b.ReportAllocs()
	for b.Loop() {
		hp, _ := FromURL(u)
		_ = hp.String()
	}
}
