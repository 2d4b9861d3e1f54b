package headers

import (
	"strings"
	"unicode/utf8"
)

// This file is a small RFC 8941 (Structured Field Values) parser, with the
// two item types RFC 9651 added (Date, Display String) so that a peer using
// them in an unknown member or parameter does not invalidate a whole field.
// It does what the package needs and no more: it validates a whole Dictionary
// or List and hands each member to a callback, without building maps, so the
// common case (a Priority header) does not allocate. Parameters are kept as
// the raw, already validated text and looked up on demand with param.
//
// The algorithms follow RFC 8941 §4.2 step by step; the section numbers in
// the comments below refer to it unless stated otherwise.

// sfError is a parse failure. It is a string constant type so that failing
// does not allocate.
type sfError string

func (e sfError) Error() string { return "structured field: " + string(e) }

const (
	errTrailing      sfError = "unexpected characters after the value"
	errEndOfInput    sfError = "unexpected end of input"
	errKey           sfError = "invalid key"
	errItem          sfError = "invalid item"
	errSeparator     sfError = "expected ',' between members"
	errTrailingComma sfError = "trailing ','"
	errInnerList     sfError = "invalid inner list"
	errNumber        sfError = "invalid number"
	errString        sfError = "invalid string"
	errBinary        sfError = "invalid byte sequence"
	errBoolean       sfError = "invalid boolean"
	errDate          sfError = "invalid date"
	errDisplayString sfError = "invalid display string"
)

// itemKind is the type of a bare item (RFC 8941 §3.3, RFC 9651 §3.3.7-8),
// or kindInnerList for a member that is an Inner List (§3.1.1).
type itemKind uint8

const (
	kindInvalid itemKind = iota
	kindInteger
	kindDecimal
	kindString
	kindToken
	kindBinary
	kindBoolean
	kindDate
	kindDisplayString
	kindInnerList
)

// bareItem is one parsed value. The zero value is kindInvalid.
type bareItem struct {
	kind itemKind
	// num holds Integer and Date values, Decimal values in thousandths
	// (a Decimal has at most three fractional digits, §3.3.2, so this is
	// exact), and Boolean values as 0 or 1.
	num int64
	// str holds String (unescaped), Token, Display String (decoded UTF-8)
	// values, the base64 text of a Byte Sequence (as sent, without the
	// colons) and the text between the parentheses of an Inner List.
	str string
}

// member is a List or Dictionary member, or an item inside an Inner List:
// a value with its parameters.
type member struct {
	value bareItem
	// params is the raw text of the parameters (starting with ';', or
	// empty), validated when the member was parsed.
	params string
}

// integer returns the value when it is an Integer.
func (b bareItem) integer() (int64, bool) {
	return b.num, b.kind == kindInteger
}

// boolean returns the value when it is a Boolean.
func (b bareItem) boolean() (v, ok bool) {
	return b.num == 1, b.kind == kindBoolean
}

// param returns the value of the parameter named key. When a key repeats,
// the last one wins (§4.2.3.2: "overwrite").
func (m member) param(key string) (bareItem, bool) {
	var (
		found bareItem
		ok    bool
	)
	_ = visitParams(m.params, func(k string, v bareItem) {
		if k == key {
			found, ok = v, true
		}
	})
	return found, ok
}

// visitParams calls visit for each parameter in raw, a parameters text as
// kept in member.params.
func visitParams(raw string, visit func(key string, v bareItem)) error {
	p := sfParser{s: raw}
	for p.peek() == ';' {
		p.s = p.s[1:]
		p.skipSP()
		k, err := p.key()
		if err != nil {
			return err
		}
		v := bareItem{kind: kindBoolean, num: 1}
		if p.peek() == '=' {
			p.s = p.s[1:]
			if v, err = p.bareItem(); err != nil {
				return err
			}
		}
		visit(k, v)
	}
	if p.s != "" {
		return errTrailing
	}
	return nil
}

// innerItems calls visit for each item of an Inner List member.
func (m member) innerItems(visit func(member)) error {
	if m.value.kind != kindInnerList {
		return errInnerList
	}
	p := sfParser{s: m.value.str}
	for {
		p.skipSP()
		if p.s == "" {
			return nil
		}
		it, err := p.item()
		if err != nil {
			return err
		}
		visit(it)
	}
}

// parseDictionary parses s as a Dictionary (§4.2.2) and calls visit for
// each member in order. A key may be visited more than once; the last
// visit wins (§4.2.2: "overwrite"). visit may be called before a later
// syntax error is found: callers must discard what they saw when the
// returned error is not nil, since an invalid field is ignored whole
// (§4.2).
func parseDictionary(s string, visit func(key string, m member)) error {
	p := sfParser{s: s}
	p.skipSP()
	for p.s != "" {
		k, err := p.key()
		if err != nil {
			return err
		}
		var m member
		if p.peek() == '=' {
			p.s = p.s[1:]
			if m, err = p.itemOrInnerList(); err != nil {
				return err
			}
		} else {
			// A key without a value is Boolean true (§4.2.2 step 2.3).
			m.value = bareItem{kind: kindBoolean, num: 1}
			if m.params, err = p.parameters(); err != nil {
				return err
			}
		}
		visit(k, m)
		if err := p.memberSeparator(); err != nil {
			return err
		}
	}
	return nil
}

// parseList parses s as a List (§4.2.1) and calls visit for each member in
// order; the same caveat as for parseDictionary applies.
func parseList(s string, visit func(m member)) error {
	p := sfParser{s: s}
	p.skipSP()
	for p.s != "" {
		m, err := p.itemOrInnerList()
		if err != nil {
			return err
		}
		visit(m)
		if err := p.memberSeparator(); err != nil {
			return err
		}
	}
	return nil
}

// parseItem parses s as a single Item (§4.2.3).
func parseItem(s string) (member, error) {
	p := sfParser{s: s}
	p.skipSP()
	m, err := p.item()
	if err != nil {
		return member{}, err
	}
	p.skipSP()
	if p.s != "" {
		return member{}, errTrailing
	}
	return m, nil
}

// sfParser consumes s from the front.
type sfParser struct {
	s string
}

func (p *sfParser) peek() byte {
	if p.s == "" {
		return 0
	}
	return p.s[0]
}

func (p *sfParser) skipSP() {
	for p.s != "" && p.s[0] == ' ' {
		p.s = p.s[1:]
	}
}

// skipOWS skips optional whitespace, RFC 9110 §5.6.3: SP and HTAB.
func (p *sfParser) skipOWS() {
	for p.s != "" && (p.s[0] == ' ' || p.s[0] == '\t') {
		p.s = p.s[1:]
	}
}

// memberSeparator consumes what follows a List or Dictionary member: OWS,
// then either the end of input or a comma followed by OWS and more input
// (§4.2.1 steps 2.3-2.6).
func (p *sfParser) memberSeparator() error {
	p.skipOWS()
	if p.s == "" {
		return nil
	}
	if p.s[0] != ',' {
		return errSeparator
	}
	p.s = p.s[1:]
	p.skipOWS()
	if p.s == "" {
		return errTrailingComma
	}
	return nil
}

// itemOrInnerList parses a List or Dictionary member value (§4.2.1.1).
func (p *sfParser) itemOrInnerList() (member, error) {
	if p.peek() == '(' {
		return p.innerList()
	}
	return p.item()
}

// innerList parses an Inner List (§4.2.1.2). The items are validated and
// their text kept; innerItems walks them.
func (p *sfParser) innerList() (member, error) {
	p.s = p.s[1:] // '('
	start := p.s
	for p.s != "" {
		p.skipSP()
		if p.peek() == ')' {
			body := start[:len(start)-len(p.s)]
			p.s = p.s[1:]
			params, err := p.parameters()
			if err != nil {
				return member{}, err
			}
			return member{value: bareItem{kind: kindInnerList, str: body}, params: params}, nil
		}
		if _, err := p.item(); err != nil {
			return member{}, err
		}
		if c := p.peek(); c != ' ' && c != ')' {
			return member{}, errInnerList
		}
	}
	return member{}, errEndOfInput
}

// item parses an Item: a bare item and its parameters (§4.2.3).
func (p *sfParser) item() (member, error) {
	v, err := p.bareItem()
	if err != nil {
		return member{}, err
	}
	params, err := p.parameters()
	if err != nil {
		return member{}, err
	}
	return member{value: v, params: params}, nil
}

// parameters validates the parameters at the front of the input and
// returns their raw text (§4.2.3.2).
func (p *sfParser) parameters() (string, error) {
	start := p.s
	for p.peek() == ';' {
		p.s = p.s[1:]
		p.skipSP()
		if _, err := p.key(); err != nil {
			return "", err
		}
		if p.peek() == '=' {
			p.s = p.s[1:]
			if _, err := p.bareItem(); err != nil {
				return "", err
			}
		}
	}
	return start[:len(start)-len(p.s)], nil
}

// key parses a key (§4.2.3.3): lcalpha or '*', then lcalpha, DIGIT, '_',
// '-', '.' or '*'.
func (p *sfParser) key() (string, error) {
	if c := p.peek(); !isLCAlpha(c) && c != '*' {
		return "", errKey
	}
	n := 1
	for n < len(p.s) && isKeyChar(p.s[n]) {
		n++
	}
	k := p.s[:n]
	p.s = p.s[n:]
	return k, nil
}

// bareItem parses a bare item (§4.2.3.1, RFC 9651 §4.2.3.1), choosing the
// type by its first character.
func (p *sfParser) bareItem() (bareItem, error) {
	c := p.peek()
	switch {
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		return p.string()
	case c == '*' || isAlpha(c):
		return p.token(), nil
	case c == ':':
		return p.binary()
	case c == '?':
		return p.boolean()
	case c == '@':
		return p.date()
	case c == '%':
		return p.displayString()
	case c == 0 && p.s == "":
		return bareItem{}, errEndOfInput
	default:
		return bareItem{}, errItem
	}
}

// number parses an Integer or a Decimal (§4.2.4). Integers have at most 15
// digits, Decimals at most 12 integer and 1 to 3 fractional digits, so
// every value fits an int64 (Decimals in thousandths) without overflow.
func (p *sfParser) number() (bareItem, error) {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.s = p.s[1:]
	}
	if !isDigit(p.peek()) {
		return bareItem{}, errNumber
	}
	var (
		intPart, frac int64
		intDigits     int
		fracDigits    = -1 // -1: no '.' seen, an Integer
	)
scan:
	for p.s != "" {
		c := p.s[0]
		switch {
		case isDigit(c) && fracDigits < 0:
			intPart = intPart*10 + int64(c-'0')
			intDigits++
			if intDigits > 15 {
				return bareItem{}, errNumber
			}
		case isDigit(c):
			frac = frac*10 + int64(c-'0')
			fracDigits++
			if fracDigits > 3 {
				return bareItem{}, errNumber
			}
		case c == '.' && fracDigits < 0:
			if intDigits > 12 {
				return bareItem{}, errNumber
			}
			fracDigits = 0
		default:
			break scan
		}
		p.s = p.s[1:]
	}
	sign := int64(1)
	if neg {
		sign = -1
	}
	if fracDigits < 0 {
		return bareItem{kind: kindInteger, num: sign * intPart}, nil
	}
	if fracDigits == 0 { // "1." has no fractional digit
		return bareItem{}, errNumber
	}
	for i := fracDigits; i < 3; i++ {
		frac *= 10
	}
	return bareItem{kind: kindDecimal, num: sign * (intPart*1000 + frac)}, nil
}

// string parses a String (§4.2.5): printable ASCII between double quotes,
// with '"' and '\' escaped by '\'. It allocates only when there are
// escapes.
func (p *sfParser) string() (bareItem, error) {
	p.s = p.s[1:] // '"'
	escapes := false
	for i := 0; i < len(p.s); i++ {
		switch c := p.s[i]; {
		case c == '\\':
			if i+1 >= len(p.s) || (p.s[i+1] != '"' && p.s[i+1] != '\\') {
				return bareItem{}, errString
			}
			escapes = true
			i++
		case c == '"':
			raw := p.s[:i]
			p.s = p.s[i+1:]
			if escapes {
				raw = unescapeString(raw)
			}
			return bareItem{kind: kindString, str: raw}, nil
		case c < 0x20 || c > 0x7e:
			return bareItem{}, errString
		}
	}
	return bareItem{}, errString
}

// unescapeString removes the backslashes of a String's body that has been
// validated by sfParser.string.
func unescapeString(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

// token parses a Token (§4.2.6); the caller has checked the first
// character.
func (p *sfParser) token() bareItem {
	n := 1
	for n < len(p.s) && (isTChar(p.s[n]) || p.s[n] == ':' || p.s[n] == '/') {
		n++
	}
	t := p.s[:n]
	p.s = p.s[n:]
	return bareItem{kind: kindToken, str: t}
}

// binary parses a Byte Sequence (§4.2.7). It checks that the content would
// decode as base64 but keeps the text: nothing here needs the bytes. As
// the RFC recommends, missing '=' padding is accepted, and so are non-zero
// padding bits.
func (p *sfParser) binary() (bareItem, error) {
	p.s = p.s[1:] // ':'
	end := strings.IndexByte(p.s, ':')
	if end < 0 {
		return bareItem{}, errBinary
	}
	b64 := p.s[:end]
	body := strings.TrimSuffix(b64, "=")
	body = strings.TrimSuffix(body, "=")
	if len(body)%4 == 1 {
		return bareItem{}, errBinary
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' {
			return bareItem{}, errBinary
		}
	}
	p.s = p.s[end+1:]
	return bareItem{kind: kindBinary, str: b64}, nil
}

// boolean parses a Boolean (§4.2.8): "?1" or "?0".
func (p *sfParser) boolean() (bareItem, error) {
	if len(p.s) < 2 || (p.s[1] != '0' && p.s[1] != '1') {
		return bareItem{}, errBoolean
	}
	v := int64(p.s[1] - '0')
	p.s = p.s[2:]
	return bareItem{kind: kindBoolean, num: v}, nil
}

// date parses a Date (RFC 9651 §4.2.9): '@' and an Integer of seconds
// since the epoch.
func (p *sfParser) date() (bareItem, error) {
	p.s = p.s[1:] // '@'
	if c := p.peek(); c != '-' && !isDigit(c) {
		return bareItem{}, errDate
	}
	n, err := p.number()
	if err != nil || n.kind != kindInteger {
		return bareItem{}, errDate
	}
	return bareItem{kind: kindDate, num: n.num}, nil
}

// displayString parses a Display String (RFC 9651 §4.2.10): '%', then
// printable ASCII between double quotes, with other bytes as lowercase
// %xx escapes, decoding to valid UTF-8.
func (p *sfParser) displayString() (bareItem, error) {
	if len(p.s) < 2 || p.s[1] != '"' {
		return bareItem{}, errDisplayString
	}
	s := p.s[2:]
	var (
		buf     []byte
		escaped bool
	)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e:
			return bareItem{}, errDisplayString
		case c == '%':
			if i+2 >= len(s) {
				return bareItem{}, errDisplayString
			}
			hi, ok1 := lowerHex(s[i+1])
			lo, ok2 := lowerHex(s[i+2])
			if !ok1 || !ok2 {
				return bareItem{}, errDisplayString
			}
			if !escaped {
				buf = append(make([]byte, 0, len(s)), s[:i]...)
				escaped = true
			}
			buf = append(buf, hi<<4|lo)
			i += 2
		case c == '"':
			p.s = s[i+1:]
			if !escaped {
				return bareItem{kind: kindDisplayString, str: s[:i]}, nil
			}
			if !utf8.Valid(buf) {
				return bareItem{}, errDisplayString
			}
			return bareItem{kind: kindDisplayString, str: string(buf)}, nil
		default:
			if escaped {
				buf = append(buf, c)
			}
		}
	}
	return bareItem{}, errDisplayString
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool   { return isLCAlpha(c) || (c >= 'A' && c <= 'Z') }

func isKeyChar(c byte) bool {
	return isLCAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*'
}

// isTChar reports whether c is an RFC 9110 §5.6.2 tchar.
func isTChar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
