// Package testdns is a DNS server for tests: it answers A and AAAA
// queries for the names it is given, on a loopback UDP port, so that a
// test can make a name resolve to any address (a private one, the cloud
// metadata address) without a packet leaving the machine. Point a
// net.Resolver at it with Resolver.
package testdns

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Server answers for a fixed set of names; any other name is NXDOMAIN.
type Server struct {
	conn net.PacketConn
	done chan struct{}

	mu      sync.Mutex
	records map[string][]netip.Addr // lower-case FQDN ("api.test.") → addresses
	queries map[string]int          // FQDN → queries seen
}

// Start serves records (names without the trailing dot) until the test
// ends.
func Start(t testing.TB, records map[string][]netip.Addr) *Server {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testdns: %v", err)
	}
	s := &Server{conn: conn, done: make(chan struct{}), records: map[string][]netip.Addr{}, queries: map[string]int{}}
	for name, addrs := range records {
		s.Set(name, addrs...)
	}
	go s.serve()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

// Set makes name resolve to addrs from now on (none: NXDOMAIN).
func (s *Server) Set(name string, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fqdn := strings.ToLower(strings.TrimSuffix(name, ".")) + "."
	if len(addrs) == 0 {
		delete(s.records, fqdn)
		return
	}
	s.records[fqdn] = addrs
}

// Queries returns how many queries (A and AAAA each count) name got.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[strings.ToLower(strings.TrimSuffix(name, "."))+"."]
}

// Addr is the server's UDP address.
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Resolver returns a pure-Go resolver that asks only this server.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", s.Addr())
		},
	}
}

func (s *Server) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if resp, ok := s.answer(buf[:n]); ok {
			_, _ = s.conn.WriteTo(resp, from)
		}
	}
}

// answer builds the response to one query message.
func (s *Server) answer(msg []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	name := strings.ToLower(q.Name.String())
	s.mu.Lock()
	s.queries[name]++
	addrs, known := s.records[name]
	s.mu.Unlock()

	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil, false
	}
	res := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
	for _, a := range addrs {
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			err = b.AResource(res, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			err = b.AAAAResource(res, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, false
		}
	}
	out, err := b.Finish()
	return out, err == nil
}
