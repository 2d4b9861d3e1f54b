package headers

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// The dump helpers serialize what the parser saw in RFC 8941 §4.1
// canonical form, so that expectations are readable strings and so that
// the fuzz target can check that parse(serialize(parse(x))) is stable.

func dumpBare(b bareItem) string {
	switch b.kind {
	case kindInteger:
		return strconv.FormatInt(b.num, 10)
	case kindDecimal:
		n := b.num
		sign := ""
		if n < 0 {
			sign, n = "-", -n
		}
		frac := strings.TrimRight(strconv.FormatInt(1000+n%1000, 10)[1:], "0")
		if frac == "" {
			frac = "0"
		}
		return sign + strconv.FormatInt(n/1000, 10) + "." + frac
	case kindString:
		var sb strings.Builder
		sb.WriteByte('"')
		for i := 0; i < len(b.str); i++ {
			if b.str[i] == '"' || b.str[i] == '\\' {
				sb.WriteByte('\\')
			}
			sb.WriteByte(b.str[i])
		}
		sb.WriteByte('"')
		return sb.String()
	case kindToken:
		return b.str
	case kindBinary:
		return ":" + b.str + ":"
	case kindBoolean:
		return "?" + strconv.FormatInt(b.num, 10)
	case kindDate:
		return "@" + strconv.FormatInt(b.num, 10)
	case kindDisplayString:
		var sb strings.Builder
		sb.WriteString(`%"`)
		for i := 0; i < len(b.str); i++ {
			c := b.str[i]
			if c == '%' || c == '"' || c < 0x20 || c > 0x7e {
				sb.WriteString("%" + strconv.FormatInt(int64(c)>>4, 16) + strconv.FormatInt(int64(c)&15, 16))
				continue
			}
			sb.WriteByte(c)
		}
		sb.WriteByte('"')
		return sb.String()
	}
	return "<invalid>"
}

// orderedMap keeps keys in first-seen order and overwrites values, as
// RFC 8941 §4.2.2 and §4.2.3.2 do.
type orderedMap struct {
	keys []string
	vals map[string]string
}

func (o *orderedMap) set(k, v string) {
	if o.vals == nil {
		o.vals = map[string]string{}
	}
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func dumpParams(t testing.TB, raw string) string {
	t.Helper()
	var o orderedMap
	err := visitParams(raw, func(k string, v bareItem) {
		if v.kind == kindBoolean && v.num == 1 {
			o.set(k, "")
			return
		}
		o.set(k, "="+dumpBare(v))
	})
	if err != nil {
		t.Fatalf("visitParams(%q) on validated parameters: %v", raw, err)
	}
	var sb strings.Builder
	for _, k := range o.keys {
		sb.WriteString(";" + k + o.vals[k])
	}
	return sb.String()
}

func dumpMember(t testing.TB, m member) string {
	t.Helper()
	if m.value.kind != kindInnerList {
		return dumpBare(m.value) + dumpParams(t, m.params)
	}
	var items []string
	err := m.innerItems(func(it member) { items = append(items, dumpMember(t, it)) })
	if err != nil {
		t.Fatalf("innerItems(%q) on a validated inner list: %v", m.value.str, err)
	}
	return "(" + strings.Join(items, " ") + ")" + dumpParams(t, m.params)
}

func dumpDictionary(t testing.TB, s string) (string, error) {
	t.Helper()
	var o orderedMap
	err := parseDictionary(s, func(k string, m member) {
		if m.value.kind == kindBoolean && m.value.num == 1 {
			o.set(k, dumpParams(t, m.params))
			return
		}
		o.set(k, "="+dumpMember(t, m))
	})
	if err != nil {
		return "", err
	}
	parts := make([]string, 0, len(o.keys))
	for _, k := range o.keys {
		parts = append(parts, k+o.vals[k])
	}
	return strings.Join(parts, ", "), nil
}

func dumpList(t testing.TB, s string) (string, error) {
	t.Helper()
	var parts []string
	err := parseList(s, func(m member) { parts = append(parts, dumpMember(t, m)) })
	if err != nil {
		return "", err
	}
	return strings.Join(parts, ", "), nil
}

func dumpItem(t testing.TB, s string) (string, error) {
	t.Helper()
	m, err := parseItem(s)
	if err != nil {
		return "", err
	}
	return dumpMember(t, m), nil
}

type sfCase struct {
	name string
	in   string
	want string // canonical form; ignored when fail
	fail bool
}

func runSF(t *testing.T, parse func(testing.TB, string) (string, error), cases []sfCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse(t, tc.in)
			if tc.fail {
				if err == nil {
					t.Fatalf("parse(%q) = %q, want an error", tc.in, got)
				}
				var sfErr sfError
				if !errors.As(err, &sfErr) || !strings.HasPrefix(err.Error(), "structured field: ") {
					t.Fatalf("parse(%q) error %v is not an sfError", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("parse(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseItem(t *testing.T) {
	runSF(t, dumpItem, []sfCase{
		// Integers, §4.2.4.
		{name: "integer", in: "42", want: "42"},
		{name: "zero", in: "0", want: "0"},
		{name: "leading zeros", in: "00", want: "0"},
		{name: "negative zero", in: "-0", want: "0"},
		{name: "double minus", in: "--0", fail: true},
		{name: "negative", in: "-42", want: "-42"},
		{name: "leading zero", in: "042", want: "42"},
		{name: "leading zero negative", in: "-042", want: "-42"},
		{name: "comma", in: "2,3", fail: true},
		{name: "minus then letter", in: "-a23", fail: true},
		{name: "sign out of place", in: "4-2", fail: true},
		{name: "space after sign", in: "- 42", fail: true},
		{name: "lone minus", in: "-", fail: true},
		{name: "15 digits", in: "123456789012345", want: "123456789012345"},
		{name: "15 digits negative", in: "-999999999999999", want: "-999999999999999"},
		{name: "16 digits", in: "1234567890123456", fail: true},
		{name: "16 digits negative", in: "-1234567890123456", fail: true},
		{name: "16 digits leading zero", in: "0123456789012345", fail: true},
		// Decimals, §4.2.4.
		{name: "decimal", in: "1.23", want: "1.23"},
		{name: "negative decimal", in: "-1.23", want: "-1.23"},
		{name: "decimal trailing zero", in: "1.50", want: "1.5"},
		{name: "decimal zero fraction", in: "1.0", want: "1.0"},
		{name: "decimal space after dot", in: "1. 23", fail: true},
		{name: "decimal space before dot", in: "1 .23", fail: true},
		{name: "decimal 12 integer digits", in: "123456789012.1", want: "123456789012.1"},
		{name: "decimal longest", in: "-123456789012.123", want: "-123456789012.123"},
		{name: "decimal 13 integer digits", in: "1234567890123.0", fail: true},
		{name: "decimal two dots", in: "1.5.4", fail: true},
		{name: "decimal adjacent dots", in: "1..4", fail: true},
		{name: "decimal three fraction digits", in: "1.123", want: "1.123"},
		{name: "decimal four fraction digits", in: "1.1234", fail: true},
		{name: "decimal no fraction digit", in: "1.", fail: true},
		{name: "decimal no integer digit", in: ".5", fail: true},
		// Strings, §4.2.5.
		{name: "string", in: `"foo bar"`, want: `"foo bar"`},
		{name: "empty string", in: `""`, want: `""`},
		{name: "string escaped quote", in: `"a\"b"`, want: `"a\"b"`},
		{name: "string escaped backslash", in: `"a\\b"`, want: `"a\\b"`},
		{name: "string bad escape", in: `"a\b"`, fail: true},
		{name: "string escape at end", in: `"a\`, fail: true},
		{name: "string unterminated", in: `"abc`, fail: true},
		{name: "string tab", in: "\"a\tb\"", fail: true},
		{name: "string DEL", in: "\"a\x7fb\"", fail: true},
		{name: "string non-ASCII", in: `"é"`, fail: true},
		{name: "string then garbage", in: `"foo" bar`, fail: true},
		{name: "string all printable", in: `" !#$%&'()*+,-./09:;<=>?@AZ[]^_` + "`" + `az{|}~"`, want: `" !#$%&'()*+,-./09:;<=>?@AZ[]^_` + "`" + `az{|}~"`},
		// Tokens, §4.2.6.
		{name: "token", in: "a", want: "a"},
		{name: "token star", in: "*foo", want: "*foo"},
		{name: "token uppercase", in: "Foo", want: "Foo"},
		{name: "token with colon and slash", in: "text/html:x", want: "text/html:x"},
		{name: "token tchars", in: "a!#$%&'*+-.^_`|~9", want: "a!#$%&'*+-.^_`|~9"},
		{name: "token with space", in: "a b", fail: true},
		{name: "token after digit", in: "1a", fail: true},
		// Byte sequences, §4.2.7.
		{name: "binary", in: ":aGVsbG8=:", want: ":aGVsbG8=:"},
		{name: "binary empty", in: "::", want: "::"},
		{name: "binary no padding", in: ":aGVsbG8:", want: ":aGVsbG8:"},
		{name: "binary non-zero pad bits", in: ":iZ==:", want: ":iZ==:"},
		{name: "binary plus slash", in: ":/+Ah:", want: ":/+Ah:"},
		{name: "binary unterminated", in: ":aGVsbG8=", fail: true},
		{name: "binary space", in: ":aGVsb G8=:", fail: true},
		{name: "binary bad char", in: ":aGVsbG!8=:", fail: true},
		{name: "binary char after padding", in: ":aGVsbG8=!:", fail: true},
		{name: "binary base64url", in: ":_-Ah:", fail: true},
		{name: "binary impossible length", in: ":a:", fail: true},
		{name: "binary padding in the middle", in: ":aG=Vs:", fail: true},
		{name: "binary three pads", in: ":aG===:", fail: true},
		// Booleans, §4.2.8.
		{name: "true", in: "?1", want: "?1"},
		{name: "false", in: "?0", want: "?0"},
		{name: "boolean bad digit", in: "?2", fail: true},
		{name: "boolean missing digit", in: "?", fail: true},
		{name: "boolean space", in: "? 1", fail: true},
		{name: "boolean too long", in: "?10", fail: true},
		// Dates and display strings, RFC 9651 §4.2.9-10.
		{name: "date", in: "@1659578233", want: "@1659578233"},
		{name: "date negative", in: "@-1", want: "@-1"},
		{name: "date decimal", in: "@1.5", fail: true},
		{name: "date empty", in: "@", fail: true},
		{name: "date letter", in: "@a", fail: true},
		{name: "display string", in: `%"foo bar"`, want: `%"foo bar"`},
		{name: "display string utf-8", in: `%"f%c3%bc%c3%bc"`, want: `%"f%c3%bc%c3%bc"`},
		{name: "display string escapes", in: `%"50%25 %22q%22 \"`, want: `%"50%25 %22q%22 \"`},
		{name: "display string uppercase hex", in: `%"f%C3%BC"`, fail: true},
		{name: "display string invalid utf-8", in: `%"%c3"`, fail: true},
		{name: "display string short escape", in: `%"%2"`, fail: true},
		{name: "display string escape at end", in: `%"ab%`, fail: true},
		{name: "display string tab", in: "%\"\t\"", fail: true},
		{name: "display string single quotes", in: `%'foo'`, fail: true},
		{name: "display string unquoted", in: `%foo`, fail: true},
		{name: "display string lone percent", in: `%`, fail: true},
		{name: "display string unterminated", in: `%"foo`, fail: true},
		// Parameters, §4.2.3.2.
		{name: "parameters", in: "1;a;b=?0;c=\"x\";d=tok;e=1.5", want: "1;a;b=?0;c=\"x\";d=tok;e=1.5"},
		{name: "parameter space after semicolon", in: "1; a=2", want: "1;a=2"},
		{name: "parameter duplicate", in: "1;a=1;b=2;a=3", want: "1;a=3;b=2"},
		{name: "parameter space before semicolon", in: "1 ;a=2", fail: true},
		{name: "parameter space before equals", in: "1;a =2", fail: true},
		{name: "parameter space after equals", in: "1;a= 2", fail: true},
		{name: "parameter uppercase key", in: "1;A=2", fail: true},
		{name: "parameter empty key", in: "1;=2", fail: true},
		{name: "parameter missing value", in: "1;a=", fail: true},
		{name: "parameter inner list value", in: "1;a=(1)", fail: true},
		// Top level, §4.2.
		{name: "surrounding spaces", in: "  42  ", want: "42"},
		{name: "empty", in: "", fail: true},
		{name: "only spaces", in: "   ", fail: true},
		{name: "leading tab", in: "\t42", fail: true},
		{name: "trailing tab", in: "42\t", fail: true},
		{name: "inner list is not an item", in: "(1 2)", fail: true},
		{name: "unknown first character", in: "!", fail: true},
		{name: "NUL", in: "\x00", fail: true},
	})
}

func TestParseList(t *testing.T) {
	runSF(t, dumpList, []sfCase{
		{name: "basic", in: "1, 42", want: "1, 42"},
		{name: "empty", in: "", want: ""},
		{name: "only spaces", in: "   ", want: ""},
		{name: "leading spaces", in: "  42, 43", want: "42, 43"},
		{name: "single", in: "42", want: "42"},
		{name: "no whitespace", in: "1,42", want: "1, 42"},
		{name: "extra whitespace", in: "1 , 42", want: "1, 42"},
		{name: "tabs", in: "1\t,\t42", want: "1, 42"},
		{name: "trailing OWS", in: "1, 42 \t", want: "1, 42"},
		{name: "trailing comma", in: "1, 42,", fail: true},
		{name: "trailing comma and space", in: "1, 42, ", fail: true},
		{name: "empty member", in: "1,,42", fail: true},
		{name: "leading comma", in: ",1", fail: true},
		{name: "missing comma", in: "1 42", fail: true},
		{name: "parameterised", in: `abc_123;a=1;b=2; cdef_456, ghi;q=9;r="+w"`, want: `abc_123;a=1;b=2;cdef_456, ghi;q=9;r="+w"`},
		{name: "media types", in: "text/html,text/plain;q=0.5", want: "text/html, text/plain;q=0.5"},
		{name: "space before semicolon", in: "text/html, text/plain ;q=0.5", fail: true},
		{name: "inner lists", in: "(1 2), (42 43)", want: "(1 2), (42 43)"},
		{name: "empty inner list", in: "()", want: "()"},
		{name: "empty inner list in the middle", in: "(1),(),(42)", want: "(1), (), (42)"},
		{name: "inner list spaces", in: "(  1  42  )", want: "(1 42)"},
		{name: "inner list parameters", in: `("a";x=1 b);y;z=2`, want: `("a";x=1 b);y;z=2`},
		{name: "inner list tab", in: "(1\t 42)", fail: true},
		{name: "inner list unterminated", in: "(1 42", fail: true},
		{name: "inner list unterminated after space", in: "(1 42 ", fail: true},
		{name: "inner list unterminated in the middle", in: "(1 2, (42 43)", fail: true},
		{name: "inner list no spaces", in: `(abc"def"?0123*dXZ3*xyz)`, fail: true},
		{name: "nested inner list", in: "(1 (2))", fail: true},
		{name: "inner list space before parameters", in: "(1) ;a", fail: true},
		{name: "inner list bad parameters", in: "(1);A", fail: true},
		{name: "ratelimit policy", in: `"default";r=0;t=30`, want: `"default";r=0;t=30`},
	})
}

func TestParseDictionary(t *testing.T) {
	runSF(t, dumpDictionary, []sfCase{
		{name: "basic", in: `en="Applepie", da=:w4ZibGV0w6ZydGUK:`, want: `en="Applepie", da=:w4ZibGV0w6ZydGUK:`},
		{name: "empty", in: "", want: ""},
		{name: "single", in: "a=1", want: "a=1"},
		{name: "inner list", in: "a=(1 2)", want: "a=(1 2)"},
		{name: "single inner list", in: "a=(1)", want: "a=(1)"},
		{name: "empty inner list", in: "a=()", want: "a=()"},
		{name: "inner list with parameters", in: "a=(1 2;x);y=?0, b", want: "a=(1 2;x);y=?0, b"},
		{name: "no whitespace", in: "a=1,b=2", want: "a=1, b=2"},
		{name: "extra whitespace", in: "a=1 ,  b=2", want: "a=1, b=2"},
		{name: "tabs", in: "a=1\t,\tb=2", want: "a=1, b=2"},
		{name: "leading spaces", in: "     a=1 ,  b=2", want: "a=1, b=2"},
		{name: "leading tab", in: "\ta=1", fail: true},
		{name: "space before equals", in: "a =1, b=2", fail: true},
		{name: "space after equals", in: "a=1, b= 2", fail: true},
		{name: "missing value", in: "a=1, b, c=3", want: "a=1, b, c=3"},
		{name: "all missing values", in: "a, b, c", want: "a, b, c"},
		{name: "missing value with parameters", in: "a=1, b;foo=9, c=3", want: "a=1, b;foo=9, c=3"},
		{name: "explicit true with parameters", in: "a=1, b=?1;foo=9, c=3", want: "a=1, b;foo=9, c=3"},
		{name: "false", in: "a=?0", want: "a=?0"},
		{name: "trailing comma", in: "a=1, b=2,", fail: true},
		{name: "empty member", in: "a=1,,b=2", fail: true},
		{name: "duplicate key", in: "a=1,b=2,a=3", want: "a=3, b=2"},
		{name: "numeric key", in: "a=1,1b=2", fail: true},
		{name: "uppercase key", in: "a=1,B=2", fail: true},
		{name: "bad key", in: "a=1,b!=2", fail: true},
		{name: "key characters", in: "*a_b-c.d*9=1", want: "*a_b-c.d*9=1"},
		{name: "missing value after equals", in: "a=", fail: true},
		{name: "missing value, bad parameters", in: "a;B=1", fail: true},
		{name: "value is a key-value", in: "a=b=c", fail: true},
		{name: "all item types", in: `i=1, d=1.5, s="x", t=tok, b=:AA==:, o=?0, at=@5, ds=%"x"`, want: `i=1, d=1.5, s="x", t=tok, b=:AA==:, o=?0, at=@5, ds=%"x"`},
	})
}

func TestMemberParam(t *testing.T) {
	m, err := parseItem(`x;a=1;b="two";a=3;c`)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		key  string
		want string
		ok   bool
	}{
		{key: "a", want: "3", ok: true}, // the last one wins
		{key: "b", want: `"two"`, ok: true},
		{key: "c", want: "?1", ok: true},
		{key: "d", ok: false},
		{key: "", ok: false},
	}
	for _, s := range steps {
		v, ok := m.param(s.key)
		if ok != s.ok || (ok && dumpBare(v) != s.want) {
			t.Errorf("param(%q) = %s, %v; want %s, %v", s.key, dumpBare(v), ok, s.want, s.ok)
		}
	}
	if err := m.innerItems(func(member) {}); err == nil {
		t.Error("innerItems on an item: want an error")
	}
}

func TestStringUnescapeAllocatesOnlyWhenNeeded(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = parseItem(`"plain"`) }); n != 0 {
		t.Errorf("plain string: %v allocations, want 0", n)
	}
	m, err := parseItem(`"a\"b\\c"`)
	if err != nil || m.value.str != `a"b\c` {
		t.Fatalf(`parseItem("a\"b\\c") = %q, %v`, m.value.str, err)
	}
}
