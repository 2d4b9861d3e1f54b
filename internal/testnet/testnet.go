// Package testnet holds small helpers for tests that drive real loopback
// sockets.
package testnet

import (
	"net"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address (host:port) that nothing listens
// on: a dial to it is refused. The kernel picked the port for a listener
// that is closed again before FreeAddr returns, so another process may
// take it later; tests use it for a destination that refuses, never to
// listen on.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
