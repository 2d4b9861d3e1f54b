package proxy_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// plainAlertConn stands for a client that rejects proxyd's certificate and
// sends its alert in clear: its encrypted records (type 23, the only kind
// a TLS 1.3 client sends once the handshake keys are set) are replaced by
// a plaintext fatal unknown_ca alert (RFC 8446 §6).
type plainAlertConn struct{ net.Conn }

func (c plainAlertConn) Write(p []byte) (int, error) {
	var out []byte
	for rest := p; len(rest) >= 5; {
		n := 5 + int(binary.BigEndian.Uint16(rest[3:5]))
		if n > len(rest) {
			n = len(rest)
		}
		if rest[0] == 23 {
			out = append(out, 21, 3, 3, 0, 2, 2, 48) // alert, TLS 1.2 record, fatal, unknown_ca
		} else {
			out = append(out, rest[:n]...)
		}
		rest = rest[n:]
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// TestHandshakeFailureHints: a client that fails its TLS handshake in an
// intercepted tunnel is logged with a hint at the likely cause, whatever
// symptom Go's error names (issue 25: "tls: bad record MAC" alone told
// the operator nothing).
func TestHandshakeFailureHints(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		client func(c net.Conn, host string) // speaks to proxyd in the open tunnel
		error  string                        // in the log line's error
		hint   string                        // the start of its hint
	}{
		{"untrusted CA", func(c net.Conn, host string) {
			_ = tls.Client(c, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: host}).Handshake()
		}, "remote error: tls: bad certificate", "the client refused proxyd's certificate: the client does not trust proxyd's CA"},
		{"alert in clear", func(c net.Conn, host string) {
			_ = tls.Client(plainAlertConn{c}, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: host, MinVersion: tls.VersionTLS13}).Handshake()
		}, "bad record MAC", "most likely the client refused proxyd's certificate (its alert arrived unencrypted)"},
		{"hang-up", func(c net.Conn, host string) {
			// A ClientHello, then the client closes without an alert.
			_ = tls.Client(closeAfterHello{c}, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: host}).Handshake()
		}, "", "the client hung up during the handshake"}, // EOF, or a reset
		{"plain HTTP", func(c net.Conn, host string) {
			_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
			_, _ = io.Copy(io.Discard, c)
		}, "first record does not look like a TLS handshake", "the client does not speak TLS inside the tunnel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, intercepting("127.0.0.1"))
			o := e.newTLSOrigin(nil)
			target := strings.TrimPrefix(o.URL, "https://")
			conn, _, err := e.dialConnect(target)
			if err != nil {
				t.Fatal(err)
			}
			host, _, _ := net.SplitHostPort(target)
			tc.client(conn, host)
			waitFor(t, "the CONNECT's Record", func() bool { return len(e.recordsOf(http.MethodConnect)) == 1 })
			conn.Close()
			logs := e.logs.FilterMessage("tls_handshake_failed").All()
			if len(logs) != 1 {
				t.Fatalf("%d tls_handshake_failed lines, want 1", len(logs))
			}
			f := logs[0].ContextMap()
			if got, _ := f["error"].(string); !strings.Contains(got, tc.error) {
				t.Errorf("error %q, want it to contain %q", got, tc.error)
			}
			if got, _ := f["hint"].(string); !strings.HasPrefix(got, tc.hint) {
				t.Errorf("hint %q, want it to start with %q", got, tc.hint)
			}
			o.never("/")
		})
	}
}

// closeAfterHello sends the ClientHello and then closes the connection,
// with no alert.
type closeAfterHello struct{ net.Conn }

func (c closeAfterHello) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.Conn.Close()
	return n, err
}
