//go:build !linux

package h1

import "net"

// peerClosed cannot tell without reading, outside Linux: ok is false.
func peerClosed(net.Conn) (closed, ok bool) { return false, false }
