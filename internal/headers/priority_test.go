package headers

import (
	"errors"
	"strings"
	"testing"
)

type priorityWant struct {
	urgency     int
	incremental bool
	ok          bool
}

func TestParsePriority(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want priorityWant
	}{
		{name: "u=0", in: "u=0", want: priorityWant{0, false, true}},
		{name: "u=7", in: "u=7", want: priorityWant{7, false, true}},
		{name: "u and bare i", in: "u=3, i", want: priorityWant{3, true, true}},
		{name: "i first", in: "i, u=1", want: priorityWant{1, true, true}},
		{name: "explicit i true", in: "u=5, i=?1", want: priorityWant{5, true, true}},
		{name: "explicit i false", in: "u=5, i=?0", want: priorityWant{5, false, true}},
		{name: "i not a boolean", in: "u=5, i=1", want: priorityWant{5, false, true}},
		{name: "i later overridden", in: "u=1, i, i=?0", want: priorityWant{1, false, true}},
		{name: "u leading zero", in: "u=04", want: priorityWant{4, false, true}},
		{name: "u with parameters", in: "u=2;foo=bar;x", want: priorityWant{2, false, true}},
		{name: "unknown members", in: `u=2, x=(a b);q=1, foo=:aGk=:, bar=@12, baz=%"x", q="s", d=1.5`, want: priorityWant{2, false, true}},
		{name: "no spaces", in: "u=6,i", want: priorityWant{6, true, true}},
		{name: "surrounding whitespace", in: " \tu=4 \t", want: priorityWant{4, false, true}},
		{name: "duplicate u, last wins", in: "u=1, u=2", want: priorityWant{2, false, true}},
		{name: "duplicate u, valid last", in: "u=9, u=1", want: priorityWant{1, false, true}},

		// u ignored (RFC 9218 §4.1), the dictionary is valid.
		{name: "u=8", in: "u=8", want: priorityWant{DefaultUrgency, false, false}},
		{name: "u=-1", in: "u=-1", want: priorityWant{DefaultUrgency, false, false}},
		{name: "u huge", in: "u=999999999999999", want: priorityWant{DefaultUrgency, false, false}},
		{name: "u decimal", in: "u=1.0", want: priorityWant{DefaultUrgency, false, false}},
		{name: "u string", in: `u="1"`, want: priorityWant{DefaultUrgency, false, false}},
		{name: "u token", in: "u=high", want: priorityWant{DefaultUrgency, false, false}},
		{name: "u boolean", in: "u", want: priorityWant{DefaultUrgency, false, false}},
		{name: "u inner list", in: "u=(1)", want: priorityWant{DefaultUrgency, false, false}},
		{name: "duplicate u, invalid last", in: "u=1, u=9", want: priorityWant{DefaultUrgency, false, false}},
		{name: "duplicate u, wrong type last", in: "u=1, u", want: priorityWant{DefaultUrgency, false, false}},
		{name: "only i", in: "i", want: priorityWant{DefaultUrgency, true, false}},
		{name: "u out of range keeps i", in: "u=9, i", want: priorityWant{DefaultUrgency, true, false}},
		{name: "empty", in: "", want: priorityWant{DefaultUrgency, false, false}},
		{name: "only whitespace", in: " \t ", want: priorityWant{DefaultUrgency, false, false}},
		{name: "unrelated members", in: "a=1, b", want: priorityWant{DefaultUrgency, false, false}},

		// Invalid dictionary: the whole field is ignored (RFC 8941 §4.2).
		{name: "uppercase key", in: "U=1", want: priorityWant{DefaultUrgency, false, false}},
		{name: "trailing comma", in: "u=2,", want: priorityWant{DefaultUrgency, false, false}},
		{name: "space before parameters", in: "u=2 ;i", want: priorityWant{DefaultUrgency, false, false}},
		{name: "garbage after", in: "u=4, garbage!", want: priorityWant{DefaultUrgency, false, false}},
		{name: "garbage before", in: "!, u=4, i", want: priorityWant{DefaultUrgency, false, false}},
		{name: "nested inner list", in: "u=2, x=(1 (2)), i", want: priorityWant{DefaultUrgency, false, false}},
		{name: "unterminated inner list", in: "u=2, x=(1 2", want: priorityWant{DefaultUrgency, false, false}},
		{name: "integer too long", in: "u=0000000000000004", want: priorityWant{DefaultUrgency, false, false}},
		{name: "bad boolean", in: "u=3, i=?2", want: priorityWant{DefaultUrgency, false, false}},
		{name: "non-ASCII", in: `u=3, x="é"`, want: priorityWant{DefaultUrgency, false, false}},
		{name: "semicolon separated", in: "u=3; i", want: priorityWant{3, false, true}}, // i is a parameter of u
		{name: "X-Priority style value", in: "3", want: priorityWant{DefaultUrgency, false, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkPriority(t, tc.in, tc.want, func() (int, bool, bool) { return ParsePriority(tc.in) })
		})
	}
}

func checkPriority(t *testing.T, in any, want priorityWant, parse func() (int, bool, bool)) {
	t.Helper()
	u, inc, ok := parse()
	if got := (priorityWant{u, inc, ok}); got != want {
		t.Fatalf("parse(%q) = %+v, want %+v", in, got, want)
	}
}

func TestParsePriorityValues(t *testing.T) {
	cases := []struct {
		name string
		in   []string
		want priorityWant
	}{
		{name: "nil", in: nil, want: priorityWant{DefaultUrgency, false, false}},
		{name: "one line", in: []string{"u=1"}, want: priorityWant{1, false, true}},
		{name: "two lines", in: []string{"u=1", "i"}, want: priorityWant{1, true, true}},
		{name: "later line wins", in: []string{"u=1", "u=5"}, want: priorityWant{5, false, true}},
		{name: "later invalid u wins", in: []string{"u=1", "u=8"}, want: priorityWant{DefaultUrgency, false, false}},
		{name: "empty lines skipped", in: []string{"", "u=2", " \t"}, want: priorityWant{2, false, true}},
		{name: "all empty", in: []string{"", " "}, want: priorityWant{DefaultUrgency, false, false}},
		{name: "one bad line voids all", in: []string{"u=2", "garbage!"}, want: priorityWant{DefaultUrgency, false, false}},
		{name: "whitespace around lines", in: []string{"\tu=6 ", " i\t"}, want: priorityWant{6, true, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkPriority(t, tc.in, tc.want, func() (int, bool, bool) { return ParsePriorityValues(tc.in) })
		})
	}
}

func TestParsePriorityDoesNotAllocate(t *testing.T) {
	for _, in := range []string{"u=2, i", "u=5", `u=1, x=(a "b");q=1.5, y=:aGk=:`, "garbage!"} {
		if n := testing.AllocsPerRun(100, func() { _, _, _ = ParsePriority(in) }); n != 0 {
			t.Errorf("ParsePriority(%q): %v allocations, want 0", in, n)
		}
	}
}

func TestParseUrgency(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    int
		wantErr string // substring of the error; "" = no error
	}{
		{name: "0", in: "0", want: 0},
		{name: "1", in: "1", want: 1},
		{name: "3", in: "3", want: 3},
		{name: "7", in: "7", want: 7},
		{name: "spaces", in: " 3 ", want: 3},
		{name: "tabs", in: "\t5\t", want: 5},
		{name: "leading zero", in: "07", want: 7},
		{name: "zeros", in: "000", want: 0},
		{name: "word", in: "banana", wantErr: `"banana": not an integer`},
		{name: "8", in: "8", wantErr: `"8": out of range`},
		{name: "9", in: "9", wantErr: `"9": out of range`},
		{name: "10", in: "10", wantErr: "out of range"},
		{name: "huge", in: "99999999999999999999999999", wantErr: "out of range"},
		{name: "negative", in: "-1", wantErr: `"-1": negative`},
		{name: "negative zero", in: "-0", wantErr: "negative"},
		{name: "plus", in: "+1", wantErr: "sign not allowed"},
		{name: "lone minus", in: "-", wantErr: "not an integer"},
		{name: "decimal", in: "1.5", wantErr: "not an integer"},
		{name: "empty", in: "", wantErr: "empty value"},
		{name: "blank", in: "  \t", wantErr: "empty value"},
		{name: "trailing garbage", in: "07x", wantErr: `"07x": not an integer`},
		{name: "two numbers", in: "3 4", wantErr: "not an integer"},
		{name: "Arabic-Indic digit", in: "٣", wantErr: "not an integer"},
		{name: "structured form", in: "u=3", wantErr: "not an integer"},
		{name: "newline", in: "3\n", wantErr: `"3\n": not an integer`},
		{name: "long value is truncated", in: strings.Repeat("x", 100), wantErr: `"` + strings.Repeat("x", maxQuoted) + `"...: not an integer`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseUrgency(tc.in)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ParseUrgency(%q) = %d, %v; want %d, nil", tc.in, got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseUrgency(%q) = %d, nil; want an error", tc.in, got)
			}
			if !errors.Is(err, ErrInvalidUrgency) {
				t.Errorf("ParseUrgency(%q) error %v does not wrap ErrInvalidUrgency", tc.in, err)
			}
			if !strings.HasPrefix(err.Error(), "invalid urgency ") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseUrgency(%q) error %q, want it to contain %q", tc.in, err, tc.wantErr)
			}
		})
	}
}
