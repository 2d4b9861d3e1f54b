package proxy

import (
	"bufio"
	"context"
	"io"
	"net"

	"github.com/proxyd/proxyd/internal/upstream"
)

// spliceTunnel joins a hijacked client (with whatever its reader already
// buffered) to the upstream connection.
func spliceTunnel(ctx context.Context, client net.Conn, brw *bufio.ReadWriter, up net.Conn) (int64, int64, error) {
	var r io.Reader = client
	if brw != nil && brw.Reader.Buffered() > 0 {
		r = io.MultiReader(io.LimitReader(brw.Reader, int64(brw.Reader.Buffered())), client)
	}
	return upstream.Splice(ctx, client, r, up)
}
