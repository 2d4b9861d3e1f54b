//go:build unix

package upstream

import (
	"net"
	"syscall"
)

// peeker looks, without blocking and without consuming anything, at what
// an idle connection's socket holds: nothing (the connection can be
// reused), a byte (the upstream sent something no request asked for), or
// the end of the stream or an error (it went away). Go's sockets are
// non-blocking, so a peek finds an empty receive queue as EAGAIN at once.
// It is made once per connection so that a look allocates nothing.
type peeker struct {
	raw   syscall.RawConn
	look  func(fd uintptr) bool // p.peek, bound once
	state connState
	b     [1]byte
}

// newPeeker returns nil for a connection it cannot look at.
func newPeeker(c net.Conn) *peeker {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &peeker{raw: raw}
	p.look = p.peek
	return p
}

func (p *peeker) peek(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK)
	for err == syscall.EINTR {
		n, _, err = syscall.Recvfrom(int(fd), p.b[:], syscall.MSG_PEEK)
	}
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		p.state = connIdle
	case err != nil || n == 0:
		p.state = connGone
	default:
		p.state = connUnread
	}
	return true // never wait for data
}

// idle reports the socket's state now. Only the connection's owner calls
// it (the pool, under its lock, or the goroutine that took it).
func (p *peeker) idle() connState {
	if p == nil {
		return connUnknown
	}
	p.state = connUnknown
	if err := p.raw.Read(p.look); err != nil {
		return connGone
	}
	return p.state
}
