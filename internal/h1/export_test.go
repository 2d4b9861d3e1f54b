package h1

import (
	"net"
	"testing"
)

// OnBackgroundRead has f called by the watch's background reads until the
// test ends (testHookBackgroundRead): with parked true just before a read
// blocks, false once the background read has stopped. It sees every
// connection's reads, so f picks its own by address.
func OnBackgroundRead(t testing.TB, f func(nc net.Conn, parked bool)) {
	testHookBackgroundRead.Store(&f)
	t.Cleanup(func() { testHookBackgroundRead.Store(nil) })
}
