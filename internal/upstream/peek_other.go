//go:build !unix

package upstream

import "net"

// idleState cannot look at a socket here without reading it: the pool
// does not keep connections it cannot watch (see peek_unix.go).
func idleState(net.Conn) connState { return connUnknown }
