//go:build unix

package upstream

import (
	"net"
	"syscall"
)

// idleState looks, without blocking and without consuming anything, at
// what an idle connection's socket holds: nothing (the connection can be
// reused), a byte (the upstream sent something no request asked for), or
// the end of the stream or an error (it went away). Go's sockets are
// non-blocking, so a peek finds an empty receive queue as EAGAIN at once.
func idleState(c net.Conn) connState {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return connUnknown
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return connGone
	}
	state := connUnknown
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		for err == syscall.EINTR {
			n, _, err = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		}
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			state = connIdle
		case err != nil || n == 0:
			state = connGone
		default:
			state = connUnread
		}
		return true // never wait for data
	})
	if err != nil {
		return connGone
	}
	return state
}
