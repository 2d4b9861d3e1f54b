package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// client_write_timeout end to end, as the finding of issue 26 ran it:
// limits.concurrency 1, a client asks for a large body and never reads.
// proxyd starts with the bound off and a reload turns it on (the key is
// live); the stuck response is then cut, the next request answered, and
// the cut counted in proxyd_client_write_timeouts_total and logged.
func TestClientWriteTimeoutE2E(t *testing.T) {
	const size = 32 << 20
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for n := size; n > 0; n -= len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	cfg := filepath.Join(t.TempDir(), "proxyd.yaml")
	writeFile(t, cfg, "limits:\n  concurrency: 1\nclient_write_timeout: 0s\n")
	p := startProxyd(t, "--config", cfg)
	writeFile(t, cfg, "limits:\n  concurrency: 1\nclient_write_timeout: 200ms\n")
	p.sig <- syscall.SIGHUP
	p.log.waitLine(t, "configuration reloaded")

	stuck, err := net.Dial("tcp", p.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	fmt.Fprintf(stuck, "GET %s/big HTTP/1.1\r\nHost: %s\r\nX-Request-Id: noread\r\n\r\n", up.URL, strings.TrimPrefix(up.URL, "http://"))

	c := p.client()
	c.Timeout = 10 * time.Second
	defer c.CloseIdleConnections()
	resp, body := get(t, c, up.URL+"/small")
	if resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("second request: %d %q, want 200 ok", resp.StatusCode, body)
	}
	// The record is counted just after the permit goes back.
	waitFor(t, 10*time.Second, "proxyd_client_write_timeouts_total 1", func() (bool, any) {
		fam := scrape(t, p)["proxyd_client_write_timeouts_total"]
		return fam != nil && len(fam.GetMetric()) == 1 && fam.GetMetric()[0].GetCounter().GetValue() == 1, fam
	})
	line := p.log.waitLine(t, "client write timeout: response cut")
	if line["request_id"] != "noread" {
		t.Errorf("warning %v, want request_id noread", line)
	}
}
