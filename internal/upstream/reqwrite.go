package upstream

import (
	"bufio"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// writeRequestHead writes out, a bodiless request (see fastPath), to bw
// byte for byte as out.Write would, without what Request.Write spends on
// the general case (a transferWriter, fmt, a sorted copy of the header
// from a pool): the pooled client writes one per forwarded request.
// Requests it does not handle the way Request.Write does (a Host that
// needs IDNA or loses a zone, an opaque URL, trailers, Close, a
// Transfer-Encoding, control bytes in the target) go to out.Write, which
// also gives their errors.
func writeRequestHead(bw *bufio.Writer, out *http.Request) error {
	host := out.Host
	if host == "" {
		host = out.URL.Host
	}
	ruri := out.URL.RequestURI()
	if !plainHost(host) || out.URL.Opaque != "" || len(out.Trailer) > 0 || out.Close ||
		len(out.TransferEncoding) > 0 || hasCTL(ruri) || out.Method == http.MethodConnect {
		return out.Write(bw)
	}
	method := out.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(ruri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	ua := "Go-http-client/1.1" // net/http's default when the field is absent
	if vv, ok := out.Header["User-Agent"]; ok {
		ua = ""
		if len(vv) > 0 {
			ua = vv[0]
		}
	}
	// As Request.Write: only an empty value is left out; one of blanks is
	// written, trimmed to nothing (found by FuzzWriteRequestHead).
	if ua != "" {
		bw.WriteString("User-Agent: ")
		bw.WriteString(cleanValue(ua))
		bw.WriteString("\r\n")
	}
	// Request.Write sends "Content-Length: 0" for a bodiless POST, PUT or
	// PATCH ("many servers expect" one: transferWriter.shouldSendContentLength).
	if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		bw.WriteString("Content-Length: 0\r\n")
	}
	// The other fields in key order, as Header.Write sorts them; a small
	// header sorts on the stack.
	var arr [24]string
	keys := arr[:0]
	for k := range out.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue // Request.Write's reqWriteExcludeHeader
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !httpguts.ValidHeaderFieldName(k) {
			continue // Header.Write drops these too
		}
		for _, v := range out.Header[k] {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(cleanValue(v))
			bw.WriteString("\r\n")
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// plainHost reports whether Request.Write would send host unchanged: a
// valid Host field of ASCII without an IPv6 zone (those it converts with
// IDNA, drops, or trims).
func plainHost(host string) bool {
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 0x80 || c == '%' {
			return false
		}
	}
	return httpguts.ValidHostHeader(host)
}

// hasCTL reports whether s holds an ASCII control byte (Request.Write
// refuses such a target).
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// newlineToSpace is net/http's headerNewlineToSpace.
var newlineToSpace = strings.NewReplacer("\n", " ", "\r", " ")

// cleanValue is a field value as Header.Write writes it: CR and LF turned
// into spaces, then trimmed.
func cleanValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		v = newlineToSpace.Replace(v)
	}
	return textproto.TrimString(v)
}
