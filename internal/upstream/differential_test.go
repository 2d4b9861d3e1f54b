//go:build unix

package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A differential test of the pooled client (pool.go) against the part it
// replaces, net/http's Transport: the same scripted origin, misbehaving
// in the ways an upstream can (closing early, writing bytes nobody asked
// for, a body after a HEAD, 204 or 304, interim responses, ambiguous or
// truncated framing), is driven through both with the same sequence of
// requests, and each request must end the same way for its client. Above
// all, no client may ever receive a response that its own request did not
// cause (issue 26).

// behaviour is what the scripted origin does with one request.
type behaviour uint8

const (
	bNormal          behaviour = iota // keep-alive response
	bClose                            // "Connection: close", then closes
	bHangUp                           // closes without answering
	bUnsolicitedLate                  // response, then (once read) a whole unsolicited one
	bUnsolicitedSame                  // response and an unsolicited one in one write
	bHeadBody                         // HEAD: head, then (once read) a "body" that is a response
	b204Body                          // 204, then (once read) a response
	b304Body                          // 304 and a response in one write
	bInterim                          // 100 and 103, then the response
	bBothLengths                      // Content-Length and chunked
	bUntilClose                       // no length: body until close
	bTruncated                        // Content-Length larger than what is sent
	bTwoLengths                       // two different Content-Lengths
	nBehaviours
)

// late reports whether b writes its stray bytes only once the client has
// read the response (the origin waits on its gate), so that they arrive
// while the connection is idle rather than with the response.
func (b behaviour) late() bool {
	return b == bUnsolicitedLate || b == bHeadBody || b == b204Body
}

// tainting reports whether b leaves bytes on a kept-alive connection that
// no request asked for: the client must not reuse it.
func (b behaviour) tainting() bool {
	switch b {
	case bUnsolicitedLate, bUnsolicitedSame, bHeadBody, b204Body, b304Body:
		return true
	}
	return false
}

type step struct {
	method string
	b      behaviour
}

// steps decodes a fuzz input: two bytes a request (method, behaviour), at
// most 6 requests.
func steps(data []byte) []step {
	var out []step
	for i := 0; i+1 < len(data) && len(out) < 6; i += 2 {
		s := step{method: "GET", b: behaviour(data[i+1]) % nBehaviours}
		if data[i]&1 == 1 {
			s.method = "HEAD"
		}
		if s.b == bHeadBody && s.method != "HEAD" {
			s.b = bNormal // a GET would just read it as its body
		}
		out = append(out, s)
	}
	return out
}

// scriptedOrigin answers request "/<i>" as script[i] says; the body of a
// proper answer is "resp-to-/<i>". done gets i once everything the origin
// writes for that request is written; peerClosed gets, when the client
// closes a connection, the requests that connection served. A late behaviour waits for a value on gate
// (at most a second: a retried request gets none) before its stray bytes.
type scriptedOrigin struct {
	addr       string
	done       chan int
	peerClosed chan []int
	gate       chan struct{}
}

func startScriptedOrigin(t testing.TB, script []step) *scriptedOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &scriptedOrigin{addr: ln.Addr().String(), done: make(chan int, 64), peerClosed: make(chan []int, 64), gate: make(chan struct{}, 1)}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				o.serve(c, script)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return o
}

func (o *scriptedOrigin) serve(c net.Conn, script []step) {
	br := bufio.NewReader(c)
	var served []int
	for {
		req, err := readRequest(br)
		if err != nil {
			o.peerClosed <- served
			return
		}
		i, err := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/"))
		if err != nil || i < 0 || i >= len(script) {
			return
		}
		served = append(served, i)
		body := "resp-to-" + req.URL.Path
		ok := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		if req.Method == "HEAD" {
			ok = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body))
		}
		keep := true
		w := func(s string) { io.WriteString(c, s) }
		wait := func() {
			select {
			case <-o.gate:
			case <-time.After(time.Second):
			}
		}
		switch script[i].b {
		case bNormal:
			w(ok)
		case bClose:
			w(strings.Replace(ok, "\r\n", "\r\nConnection: close\r\n", 1))
			keep = false
		case bHangUp:
			keep = false
		case bUnsolicitedLate:
			w(ok)
			wait()
			w(unsolicited)
		case bUnsolicitedSame:
			w(ok + unsolicited)
		case bHeadBody:
			w(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(unsolicited)))
			wait()
			w(unsolicited)
		case b204Body:
			w("HTTP/1.1 204 No Content\r\n\r\n")
			wait()
			w(unsolicited)
		case b304Body:
			w("HTTP/1.1 304 Not Modified\r\n\r\n" + unsolicited)
		case bInterim:
			w("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + ok)
		case bBothLengths:
			if req.Method == "HEAD" {
				w(ok)
				break
			}
			w(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body))
		case bUntilClose:
			w("HTTP/1.1 200 OK\r\n\r\n")
			if req.Method != "HEAD" {
				w(body)
			}
			keep = false
		case bTruncated:
			if req.Method == "HEAD" {
				w(ok)
				break
			}
			w(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body)+10, body))
			keep = false
		case bTwoLengths:
			w(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n%s", len(body), len(body)+1, body))
		}
		o.done <- i
		if !keep {
			return
		}
	}
}

// waitDone waits until the origin has written everything for request i
// (a retried request may be served twice: any of its marks will do).
func (o *scriptedOrigin) waitDone(i int) {
	timeout := time.After(5 * time.Second)
	for {
		select {
		case j := <-o.done:
			if j == i {
				return
			}
		case <-timeout:
			return // the client gave up before the origin saw the request
		}
	}
}

// outcome is what a client saw of one request.
func outcome(resp *http.Response, err error) string {
	if err != nil {
		return "error"
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Sprintf("%d, body cut", resp.StatusCode)
	}
	return fmt.Sprintf("%d %q", resp.StatusCode, b)
}

// runScript sends the script's requests in order through roundTrip and
// returns what each client saw. settle, called after tainting step i once
// the origin has written everything, waits until the client can know.
func runScript(t testing.TB, o *scriptedOrigin, script []step, roundTrip func(*http.Request) (*http.Response, error), settle func(i int)) []string {
	t.Helper()
	var got []string
	for i, s := range script {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, err := http.NewRequestWithContext(ctx, s.method, "http://"+o.addr+"/"+strconv.Itoa(i), nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, outcome(roundTrip(req)))
		cancel()
		if s.b.late() {
			select {
			case o.gate <- struct{}{}:
			default:
			}
		}
		o.waitDone(i)
		if s.b.tainting() {
			settle(i)
		}
	}
	return got
}

// checkScript runs script through the pooled client and through
// http.Transport and compares what their clients saw.
func checkScript(t testing.TB, script []step) {
	if len(script) == 0 {
		return
	}
	// The pooled client.
	o := startScriptedOrigin(t, script)
	f := New(Config{})
	defer f.Close()
	pooled := runScript(t, o, script, func(r *http.Request) (*http.Response, error) {
		return f.roundTripH1(Outbound(r.Context(), r, r.URL, nil), 5*time.Second)
	}, func(int) { waitTainted(f) })

	// net/http's Transport, as a client would use it.
	o2 := startScriptedOrigin(t, script)
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	transport := runScript(t, o2, script, tr.RoundTrip, func(i int) {
		// Its read loop closes a connection that receives anything
		// while idle; wait until it has closed the one that served
		// request i. (Sending the next request before that is a race
		// that net/http loses: the unsolicited response is handed to
		// the next request. The pool looks before it reuses.)
		timeout := time.After(2 * time.Second)
		for {
			select {
			case served := <-o2.peerClosed:
				if slices.Contains(served, i) {
					return
				}
			case <-timeout:
				return
			}
		}
	})

	for i, s := range script {
		own := fmt.Sprintf("%q", "resp-to-/"+strconv.Itoa(i))
		for _, c := range []struct{ name, got string }{{"pool", pooled[i]}, {"Transport", transport[i]}} {
			if strings.Contains(c.got, "resp-to-") && !strings.HasSuffix(c.got, own) {
				t.Errorf("request %d (%s %v): %s client got another request's response: %s", i, s.method, s.b, c.name, c.got)
			}
		}
		if pooled[i] != transport[i] {
			t.Errorf("request %d (%s, behaviour %d) of %v: pool saw %s, Transport saw %s", i, s.method, s.b, script, pooled[i], transport[i])
		}
	}
}

// waitTainted waits (at most 2 s) until no idle connection of f's pool
// looks reusable: the origin's stray bytes have reached its socket.
func waitTainted(f *Forwarder) {
	for _, pc := range idlePconns(f) {
		waitReadable(pc, 2*time.Second)
	}
}

// differentialSeeds: every behaviour alone, then followed by a normal
// request (which must get its own answer), and a few chains.
func differentialSeeds() [][]byte {
	var seeds [][]byte
	for b := range nBehaviours {
		for _, m := range []byte{0, 1} {
			seeds = append(seeds, []byte{m, byte(b), 0, byte(bNormal), 1, byte(bNormal)})
		}
	}
	seeds = append(seeds,
		[]byte{0, byte(bUnsolicitedLate), 0, byte(bUnsolicitedLate), 0, byte(bNormal)},
		[]byte{1, byte(bHeadBody), 0, byte(b204Body), 0, byte(b304Body), 0, byte(bNormal)},
		[]byte{0, byte(bInterim), 0, byte(bHangUp), 0, byte(bTruncated), 0, byte(bNormal)},
	)
	return seeds
}

// TestPoolMatchesTransport runs the seeds; FuzzPoolMatchesTransport
// explores further (go test -fuzz=FuzzPoolMatchesTransport).
func TestPoolMatchesTransport(t *testing.T) {
	for _, seed := range differentialSeeds() {
		t.Run(fmt.Sprint(steps(seed)), func(t *testing.T) { checkScript(t, steps(seed)) })
	}
}

func FuzzPoolMatchesTransport(f *testing.F) {
	for _, seed := range differentialSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkScript(t, steps(data)) })
}
