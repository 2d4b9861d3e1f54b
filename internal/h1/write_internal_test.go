package h1

import (
	"io"
	"net"
	"testing"
	"time"
)

// BenchmarkClientWriter is the cost per 4 KiB write (what the connection's
// bufio.Writer hands down) to a loopback TCP client that reads everything:
// without a timeout, with WriteStallTimeout (the deadline moved lazily, as
// clientWriter does), and with a deadline set before every write (what
// the lazy scheme saves).
//
//	go test -run=^$ -bench=ClientWriter ./internal/h1
func BenchmarkClientWriter(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c) //nolint:errcheck // until the writer closes
	}()
	rwc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		rwc.Close()
		<-drained
	}()
	p := make([]byte, bufSize)
	minute := func() time.Duration { return time.Minute }
	for _, bc := range []struct {
		name  string
		hook  func() time.Duration
		eager bool
	}{{"off", nil, false}, {"lazy", minute, false}, {"eager", nil, true}} {
		b.Run(bc.name, func(b *testing.B) {
			c := &conn{srv: &Server{WriteStallTimeout: bc.hook}, rwc: rwc}
			c.cw.c = c
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if bc.eager {
					rwc.SetWriteDeadline(time.Now().Add(time.Minute)) //nolint:errcheck // benchmark
				}
				if _, err := c.cw.Write(p); err != nil {
					b.Fatal(err)
				}
			}
			rwc.SetWriteDeadline(time.Time{}) //nolint:errcheck // benchmark
		})
	}
}
