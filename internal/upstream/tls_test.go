package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// https upstreams: verified against the system roots plus ExtraRoots,
// which change live; a wrong name or an unknown authority is a
// certificate error, anything else in the handshake a protocol error;
// HTTP/2 is negotiated by ALPN.
func TestTLSUpstreams(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = discardLog()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	old := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	old.TLS = &tls.Config{MaxVersion: tls.VersionTLS11}
	old.Config.ErrorLog = discardLog()
	old.StartTLS()
	t.Cleanup(old.Close)

	f := newForwarder(t, Config{ExtraRoots: []*x509.Certificate{srv.Certificate()}})
	fetch := func(u string) (string, error) {
		t.Helper()
		resp, err := f.RoundTrip(get(t, context.Background(), u), 5*time.Second)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	// Trusted through ExtraRoots, HTTP/2 through ALPN.
	if proto, err := fetch(srv.URL + "/"); err != nil || proto != "HTTP/2.0" {
		t.Fatalf("trusted h2 upstream: %q %v", proto, err)
	}
	// httptest's certificate names 127.0.0.1 and example.com, not localhost.
	port := srv.URL[strings.LastIndexByte(srv.URL, ':'):]
	if _, err := fetch("https://localhost" + port + "/"); !errors.Is(err, ErrTLSCertificate) {
		t.Errorf("wrong name: %v, want ErrTLSCertificate", err)
	}
	if _, err := fetch(old.URL + "/"); !errors.Is(err, ErrTLSProtocol) && !errors.Is(err, ErrTLSCertificate) {
		t.Errorf("TLS 1.1 only: %v, want a TLS error", err)
	} else if !errors.Is(err, ErrTLSProtocol) {
		t.Errorf("TLS 1.1 only: %v, want ErrTLSProtocol (the version is refused before any certificate)", err)
	}
	// Roots change live: without the extra root the next handshake fails.
	if err := f.SetExtraRoots(nil); err != nil {
		t.Fatal(err)
	}
	f.Close() // drop the pooled connection
	if _, err := fetch(srv.URL + "/"); !errors.Is(err, ErrTLSCertificate) {
		t.Errorf("after dropping the extra root: %v, want ErrTLSCertificate", err)
	}
}
