//go:build !unix

package upstream

import "net"

// peeker cannot look at a socket here without reading it: the pool does
// not keep connections it cannot watch (see peek_unix.go).
type peeker struct{}

func newPeeker(net.Conn) *peeker { return nil }

func (p *peeker) idle() connState { return connUnknown }
