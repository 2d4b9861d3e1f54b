package h1

import (
	"encoding/binary"
	"net"
	"syscall"
)

// tcpEstablished is Linux's TCP_ESTABLISHED, the first byte of tcp_info
// (tcpi_state) while neither side has closed.
const tcpEstablished = 1

// peerClosed reports, without reading from c, whether its peer has closed
// its end (a FIN: CLOSE_WAIT) or reset it, even when data the peer sent
// before is still unread; ok is false when it cannot tell (not a TCP
// socket). A TLS connection is checked through the connection below it.
func peerClosed(c net.Conn) (closed, ok bool) {
	if nc, isTLS := c.(interface{ NetConn() net.Conn }); isTLS {
		c = nc.NetConn()
	}
	sc, isSys := c.(syscall.Conn)
	if !isSys {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var v int
	var gerr error
	err = rc.Control(func(fd uintptr) {
		// Four bytes of struct tcp_info: the kernel copies no more than
		// asked; tcpi_state is the first.
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO)
	})
	if err != nil || gerr != nil {
		return false, false
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(v))
	return b[0] != tcpEstablished, true
}
