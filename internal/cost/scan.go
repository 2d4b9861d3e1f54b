package cost

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/bits"
	"strconv"
)

// trie is a compiled set of dotted JSON paths. Node 0 is the document's
// root; a node with slot >= 0 ends a path whose number is wanted there.
// It is immutable once built, so one trie serves any number of scanners.
type trie struct {
	nodes []trieNode
	slots int // slots used: 1 + the largest slot
}

type trieNode struct {
	slot     int // -1: no path ends here
	children []trieChild
}

type trieChild struct {
	key  string
	node int32
}

func newTrie() *trie { return &trie{nodes: []trieNode{{slot: -1}}} }

// add makes path end in slot (several paths may share one).
func (t *trie) add(path []string, slot int) {
	n := int32(0)
	for _, k := range path {
		next := int32(-1)
		for _, c := range t.nodes[n].children {
			if c.key == k {
				next = c.node
				break
			}
		}
		if next < 0 {
			next = int32(len(t.nodes))
			t.nodes = append(t.nodes, trieNode{slot: -1})
			t.nodes[n].children = append(t.nodes[n].children, trieChild{k, next})
		}
		n = next
	}
	t.nodes[n].slot = slot
	t.slots = max(t.slots, slot+1)
}

// child is the node under n for key, or -1; comparing string(key) does not
// allocate.
func (t *trie) child(n int32, key []byte) int32 {
	for _, c := range t.nodes[n].children {
		if c.key == string(key) {
			return c.node
		}
	}
	return -1
}

// Bounds of a scanner: what it keeps of one document is its container
// stack (at most maxDepth deep), one object key as written (maxRawKey
// bytes: a path key of maxKey bytes written with \uXXXX escapes only) and
// one number (maxNum bytes); beyond them a document is given up (depth)
// or a key or number simply cannot match.
const (
	maxDepth  = 512
	maxKey    = 64
	maxRawKey = 6 * maxKey
	maxNum    = 32
	// maxSlots bounds the paths of a trie (config allows 16 usage paths).
	maxSlots = 32
)

// Scanner states.
const (
	stTop      uint8 = iota // before a top-level value (or between them, multi)
	stEnd                   // after the single top-level value: whitespace only
	stValue                 // a value is expected
	stArrFirst              // after '[': a value or ']'
	stObjFirst              // after '{': a key or '}'
	stObjKey                // after ',' in an object: a key
	stColon                 // after a key
	stAfter                 // after a value in a container: ',' or the closer
	stStr                   // in a string
	stStrEsc                // after '\' in a string
	stStrU                  // in the hex digits of \uXXXX
	stNumMinus              // after '-'
	stNumZero               // after a leading 0
	stNumInt                // in the integer digits
	stNumDot                // after '.'
	stNumFrac               // in the fraction digits
	stNumE                  // after 'e' or 'E'
	stNumESign              // after the exponent's sign
	stNumExp                // in the exponent digits
	stLit                   // in true, false or null
	stErr                   // not JSON: everything else is ignored
)

// frame is an open container: its kind and the trie node of its members
// (an object's node, under which keys are looked up; for an array, the
// node its elements take, -1 for none).
type frame struct {
	obj  bool
	node int32
}

// maxPathKeys is the most keys of a path (CheckPath).
const maxPathKeys = 16

// maxFrameNodes is how deep a frame can have a node: the root, a
// top-level array's elements, then one frame per key of the longest path.
// Deeper frames have none.
const maxFrameNodes = maxPathKeys + 2

// stack holds the open containers without a slice (so that a scanner on
// the stack stays there, and Estimate does not allocate): a bit per level
// for its kind, and the nodes of the first maxFrameNodes levels.
type stack struct {
	depth int
	objs  [maxDepth / 64]uint64
	nodes [maxFrameNodes]int32
}

func (k *stack) push(f frame) bool {
	if k.depth == maxDepth {
		return false
	}
	w, b := k.depth/64, uint(k.depth%64)
	if f.obj {
		k.objs[w] |= 1 << b
	} else {
		k.objs[w] &^= 1 << b
	}
	if k.depth < maxFrameNodes {
		k.nodes[k.depth] = f.node
	}
	k.depth++
	return true
}

func (k *stack) top() frame {
	d := k.depth - 1
	f := frame{obj: k.objs[d/64]&(1<<uint(d%64)) != 0, node: -1}
	if d < maxFrameNodes {
		f.node = k.nodes[d]
	}
	return f
}

// scanner is an incremental JSON tokenizer (RFC 8259) that picks numbers
// out of a document at the paths of a trie. It is fed any split of the
// input through write and keeps no part of it but the path stack, the key
// being read and the number being read: memory is bounded whatever the
// document's size. It accepts exactly what encoding/json's Valid accepts
// (the fuzz target FuzzEstimate checks that), so a body it calls JSON is
// JSON.
//
// Values picked are non-negative integers (12 or 12.0, up to 2^53); any
// other value at a path is ignored. A key repeated in an object: the last
// wins, as with encoding/json.
type scanner struct {
	t *trie
	// multi: a sequence of top-level values (JSON text sequences,
	// newline-delimited JSON), each one committed when it ends; otherwise
	// exactly one value and the caller commits after finish.
	multi bool
	// arrayDocs: the elements of a top-level array are documents (they
	// take the root node), as Gemini's streamGenerateContent answers.
	arrayDocs bool

	state   uint8
	isKey   bool   // the string being read is an object key
	collect bool   // the key (or number) being read is kept
	keyEsc  bool   // the key holds an escape
	keyLen  int    // bytes of key kept; > maxRawKey: too long to match
	uleft   uint8  // hex digits left in \uXXXX
	lit     string // the rest of the literal being read
	valNode int32  // the trie node of the value that starts next
	numNode int32  // the node of the number being kept
	numLen  int
	stack   stack
	key     [maxRawKey]byte
	num     [maxNum]byte

	// cur holds the numbers of the value being read; done those of the
	// values committed (multi), the last of each slot winning.
	cur, done values
}

// values are the numbers found per slot, set says which.
type values struct {
	set uint32
	n   [maxSlots]int64
}

// merge sets in v every slot set in o, o's number winning.
func (v *values) merge(o *values) {
	for s := o.set; s != 0; s &= s - 1 {
		i := bits.TrailingZeros32(s)
		v.n[i] = o.n[i]
	}
	v.set |= o.set
}

func (s *scanner) init(t *trie, multi, arrayDocs bool) {
	s.t, s.multi, s.arrayDocs = t, multi, arrayDocs
	s.reset()
}

// reset starts a new input.
func (s *scanner) reset() {
	s.state = stTop
	s.stack.depth = 0
	s.cur, s.done = values{}, values{}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// write scans p, the next bytes of the input.
func (s *scanner) write(p []byte) {
	for i := 0; i < len(p); {
		c := p[i]
		switch s.state {
		case stErr:
			return
		case stStr:
			j := skipStr(p, i)
			if s.collect {
				s.keep(p[i:j])
			}
			if j == len(p) {
				return
			}
			i = j
			switch c = p[i]; {
			case c == '"':
				i++
				s.endString()
			case c == '\\':
				if s.collect {
					s.keep(p[i : i+1])
				}
				i++
				s.state = stStrEsc
			default: // a control character
				s.state = stErr
			}
		case stStrEsc:
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.state = stStr
			case 'u':
				s.state, s.uleft = stStrU, 4
			default:
				s.state = stErr
				return
			}
			if s.collect {
				s.keyEsc = true
				s.keep(p[i : i+1])
			}
			i++
		case stStrU:
			if !isHex(c) {
				s.state = stErr
				return
			}
			if s.collect {
				s.keep(p[i : i+1])
			}
			if s.uleft--; s.uleft == 0 {
				s.state = stStr
			}
			i++
		case stNumMinus, stNumZero, stNumInt, stNumDot, stNumFrac, stNumE, stNumESign, stNumExp:
			if !s.number(c) {
				// c ends the number (or was not allowed: stErr); it is
				// read again in the state that follows.
				if s.state == stErr {
					return
				}
				s.endValue()
				continue
			}
			if s.collect {
				s.keepNum(c)
			}
			i++
		case stLit:
			if c != s.lit[0] {
				s.state = stErr
				return
			}
			i++
			if s.lit = s.lit[1:]; s.lit == "" {
				s.endValue()
			}
		default:
			if isSpace(c) {
				i++
				continue
			}
			s.structural(c)
			i++
		}
	}
}

// structural handles c, not whitespace, in a state between tokens.
func (s *scanner) structural(c byte) {
	switch s.state {
	case stTop:
		s.valNode = 0
		s.beginValue(c)
	case stValue:
		s.beginValue(c)
	case stArrFirst:
		if c == ']' {
			s.pop()
			return
		}
		s.beginValue(c)
	case stObjFirst, stObjKey:
		switch {
		case c == '}' && s.state == stObjFirst:
			s.pop()
		case c == '"':
			s.state, s.isKey = stStr, true
			s.collect = s.stack.top().node >= 0
			s.keyLen, s.keyEsc = 0, false
		default:
			s.state = stErr
		}
	case stColon:
		if c != ':' {
			s.state = stErr
			return
		}
		s.state = stValue
	case stAfter:
		f := s.stack.top()
		switch {
		case c == ',' && f.obj:
			s.state = stObjKey
		case c == ',':
			s.state, s.valNode = stValue, f.node
		case c == '}' && f.obj, c == ']' && !f.obj:
			s.pop()
		default:
			s.state = stErr
		}
	default: // stEnd: only whitespace may follow
		s.state = stErr
	}
}

// beginValue starts the value whose first byte is c, at s.valNode.
func (s *scanner) beginValue(c byte) {
	n := s.valNode
	switch c {
	case '{', '[':
		f := frame{obj: c == '{', node: -1}
		switch {
		case f.obj && n >= 0 && len(s.t.nodes[n].children) > 0:
			f.node = n
		case !f.obj && s.stack.depth == 0 && s.arrayDocs:
			f.node = 0
		}
		if !s.stack.push(f) {
			s.state = stErr
			return
		}
		if f.obj {
			s.state = stObjFirst
		} else {
			s.state, s.valNode = stArrFirst, f.node
		}
	case '"':
		s.state, s.isKey, s.collect = stStr, false, false
	case 't':
		s.state, s.lit = stLit, "rue"
	case 'f':
		s.state, s.lit = stLit, "alse"
	case 'n':
		s.state, s.lit = stLit, "ull"
	default:
		if c != '-' && (c < '0' || c > '9') {
			s.state = stErr
			return
		}
		s.collect = n >= 0 && s.t.nodes[n].slot >= 0
		s.numNode, s.numLen = n, 0
		switch c {
		case '-':
			s.state = stNumMinus
		case '0':
			s.state = stNumZero
		default:
			s.state = stNumInt
		}
		if s.collect {
			s.keepNum(c)
		}
	}
}

// number moves the number state machine on c and reports whether c is
// part of the number; when it is not, the number ends before c (or, if
// it cannot end here, s.state is stErr).
func (s *scanner) number(c byte) bool {
	digit := c >= '0' && c <= '9'
	switch s.state {
	case stNumMinus:
		switch {
		case c == '0':
			s.state = stNumZero
		case digit:
			s.state = stNumInt
		default:
			s.state = stErr
		}
		return s.state != stErr
	case stNumZero, stNumInt:
		switch {
		case digit && s.state == stNumInt:
		case c == '.':
			s.state = stNumDot
		case c == 'e' || c == 'E':
			s.state = stNumE
		case digit: // a digit after a leading 0
			s.state = stErr
			return false
		default:
			return false
		}
	case stNumDot:
		if !digit {
			s.state = stErr
			return false
		}
		s.state = stNumFrac
	case stNumFrac:
		switch {
		case digit:
		case c == 'e' || c == 'E':
			s.state = stNumE
		default:
			return false
		}
	case stNumE:
		switch {
		case c == '+' || c == '-':
			s.state = stNumESign
		case digit:
			s.state = stNumExp
		default:
			s.state = stErr
			return false
		}
	case stNumESign:
		if !digit {
			s.state = stErr
			return false
		}
		s.state = stNumExp
	case stNumExp:
		return digit
	}
	return true
}

// numberEnds reports whether a number may end in the current state.
func (s *scanner) numberEnds() bool {
	switch s.state {
	case stNumZero, stNumInt, stNumFrac, stNumExp:
		return true
	}
	return false
}

func (s *scanner) keep(b []byte) {
	if s.keyLen+len(b) <= maxRawKey {
		copy(s.key[s.keyLen:], b)
	}
	s.keyLen += len(b)
}

func (s *scanner) keepNum(c byte) {
	if s.numLen < maxNum {
		s.num[s.numLen] = c
	}
	s.numLen++
}

// endString ends a string: a value, or a key whose node is then looked
// up.
func (s *scanner) endString() {
	if !s.isKey {
		s.endValue()
		return
	}
	s.state, s.valNode = stColon, -1
	if !s.collect || s.keyLen > maxRawKey {
		return
	}
	key := s.key[:s.keyLen]
	if s.keyEsc {
		var k string
		if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &k) != nil || len(k) > maxKey {
			return
		}
		key = append(s.key[:0], k...)
	}
	s.valNode = s.t.child(s.stack.top().node, key)
}

// endValue ends a scalar value, or a container after pop.
func (s *scanner) endValue() {
	if s.collect && s.numLen > 0 && s.numLen <= maxNum {
		if v, ok := parseCount(s.num[:s.numLen]); ok {
			slot := s.t.nodes[s.numNode].slot
			s.cur.n[slot] = v
			s.cur.set |= 1 << slot
		}
	}
	s.collect, s.numLen = false, 0
	if s.stack.depth > 0 {
		s.state = stAfter
		return
	}
	// A top-level value ended.
	if s.multi {
		s.done.merge(&s.cur)
		s.cur = values{}
		s.state = stTop
	} else {
		s.state = stEnd
	}
}

func (s *scanner) pop() {
	s.stack.depth--
	s.endValue()
}

// finish ends the input and reports whether it was complete JSON: one
// value (not multi) or any number of them (multi; a value cut short is
// dropped). The numbers found are then in s.done (multi) or s.cur.
func (s *scanner) finish() bool {
	if s.numberEnds() && s.stack.depth == 0 {
		s.endValue()
	}
	if s.multi {
		return s.state == stTop
	}
	return s.state == stEnd
}

// parseCount reads a JSON number as a count of tokens: a non-negative
// integer up to 2^53 (12 or 12.0 or 1.2e1).
func parseCount(b []byte) (int64, bool) {
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return n, n >= 0 && n <= 1<<53
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f < 0 || f > 1<<53 || f != math.Trunc(f) {
		return 0, false
	}
	return int64(f), true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// SWAR constants: a byte repeated in every lane of a uint64.
const (
	lanes1  = 0x0101010101010101
	lanesHi = 0x8080808080808080
)

// skipStr returns the index of the first '"', '\' or control character
// in p from i on, or len(p): a string's plain bytes are skipped eight at a
// time (a lane test: any byte zero in x^'"', x^'\', or below 0x20).
func skipStr(p []byte, i int) int {
	for i+8 <= len(p) {
		x := binary.LittleEndian.Uint64(p[i:])
		q := x ^ (lanes1 * '"')
		b := x ^ (lanes1 * '\\')
		if ((q-lanes1)&^q|(b-lanes1)&^b|(x-lanes1*0x20)&^x)&lanesHi != 0 {
			break
		}
		i += 8
	}
	for ; i < len(p); i++ {
		if c := p[i]; c == '"' || c == '\\' || c < 0x20 {
			return i
		}
	}
	return i
}
