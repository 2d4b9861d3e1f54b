package h1

import "bytes"

// DefaultMaxHeaderFields is how many header fields a request may carry
// when Server.MaxHeaderFields is 0.
const DefaultMaxHeaderFields = 200

// headerScan looks at a request's header block as its bytes go from the
// connection to the bufio.Reader that http.ReadRequest parses, for what
// ReadRequest accepts or hides and proxyd refuses (docs/operations.md,
// "Framing and header limits"):
//
//   - more than max field lines: the scan stops there, so that a header of
//     100,000 tiny fields is refused (431) before ReadRequest builds a map
//     of them;
//   - both Content-Length and Transfer-Encoding, which ReadRequest resolves
//     by deleting Content-Length (RFC 9112 §6.3: it "ought to be handled as
//     an error"), and Transfer-Encoding in HTTP/1.0, which it deletes
//     (RFC 9112 §6.1: the framing is faulty);
//   - whitespace between a field name and its colon, which ReadRequest
//     keeps in the name ("Transfer-Encoding " frames nothing), where
//     RFC 9112 §5.1 says a server MUST answer 400.
//
// Lines end at LF, as for ReadRequest (a CR before it is dropped). The
// first line is the request line; an empty line ends the block. A line
// that starts with a space or tab continues the previous field (obs-fold)
// and is not another field.
type headerScan struct {
	max   int // field lines allowed
	state scanState
	pos   int  // bytes of the current field name so far
	cl    bool // the name so far may be Content-Length
	te    bool // the name so far may be Transfer-Encoding

	fields  int  // field lines seen
	tooMany bool // more than max: the scan stopped at the first byte of one
	sawCL   bool // a Content-Length field
	sawTE   bool // a Transfer-Encoding field
	wsName  bool // a space or tab in a field name
}

type scanState uint8

const (
	scanRequestLine scanState = iota
	scanLineStart
	scanCR    // a line that began with CR: the end, if LF follows
	scanName  // in a field name, before its colon
	scanValue // after the colon, or in a line that is not a field
	scanDone  // the header block ended, or the scan stopped
)

const (
	nameCL = "content-length"
	nameTE = "transfer-encoding"
)

// reset starts the scan of a new request.
func (s *headerScan) reset(max int) { *s = headerScan{max: max} }

// done reports whether the scan has ended (the block is complete, or the
// field cap was reached).
func (s *headerScan) done() bool { return s.state == scanDone }

// feed scans p, the next bytes of the request, and returns how many of them
// to pass on: len(p), or, when p holds the first byte of a field beyond
// max, the offset of that byte.
func (s *headerScan) feed(p []byte) int {
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch s.state {
		case scanDone:
			return len(p)
		case scanRequestLine, scanValue:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return len(p)
			}
			i += j
			s.state = scanLineStart
		case scanLineStart:
			switch b {
			case '\n':
				s.state = scanDone
			case '\r':
				s.state = scanCR
			case ' ', '\t':
				s.state = scanValue // obs-fold: the same field goes on
			default:
				s.fields++
				if s.fields > s.max {
					s.tooMany = true
					s.state = scanDone
					return i
				}
				s.state, s.pos, s.cl, s.te = scanName, 0, true, true
				i-- // b is the name's first byte
			}
		case scanCR:
			if b == '\n' {
				s.state = scanDone
				continue
			}
			// A line that starts with CR is no field (ReadRequest refuses it).
			s.state = scanValue
			i--
		case scanName:
			switch b {
			case ':':
				s.sawCL = s.sawCL || s.cl && s.pos == len(nameCL)
				s.sawTE = s.sawTE || s.te && s.pos == len(nameTE)
				s.state = scanValue
			case '\n':
				s.state = scanLineStart // no colon: ReadRequest refuses it
			case ' ', '\t':
				s.wsName = true
				s.cl, s.te = false, false
			default:
				if 'A' <= b && b <= 'Z' {
					b += 'a' - 'A'
				}
				s.cl = s.cl && s.pos < len(nameCL) && nameCL[s.pos] == b
				s.te = s.te && s.pos < len(nameTE) && nameTE[s.pos] == b
				s.pos++
			}
		}
	}
	return len(p)
}
