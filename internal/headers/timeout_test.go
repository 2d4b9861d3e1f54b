package headers

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseTimeout(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr string // substring of the error; "" = no error
	}{
		{name: "go duration", in: "2.5s", want: 2500 * time.Millisecond},
		{name: "milliseconds", in: "500ms", want: 500 * time.Millisecond},
		{name: "minute", in: "1m", want: time.Minute},
		{name: "compound", in: "1h30m", want: 90 * time.Minute},
		{name: "microseconds", in: "1500us", want: 1500 * time.Microsecond},
		{name: "micro sign", in: "3µs", want: 3 * time.Microsecond},
		{name: "plus duration", in: "+2s", want: 2 * time.Second},
		{name: "plain seconds", in: "3", want: 3 * time.Second},
		{name: "fractional seconds", in: "0.25", want: 250 * time.Millisecond},
		{name: "leading dot", in: ".5", want: 500 * time.Millisecond},
		{name: "trailing dot", in: "5.", want: 5 * time.Second},
		{name: "plus seconds", in: "+3", want: 3 * time.Second},
		{name: "whitespace", in: " \t3 ", want: 3 * time.Second},
		{name: "nanosecond digits", in: "1.000000001", want: time.Second + 1},
		{name: "digits below a nanosecond are dropped", in: "0.0000000019", want: 1},
		{name: "leading zeros", in: "0000000000000000000000003", want: 3 * time.Second},
		{name: "largest seconds", in: "9223372036.854775807", want: math.MaxInt64},

		{name: "empty", in: "", wantErr: "empty value"},
		{name: "blank", in: " \t ", wantErr: "empty value"},
		{name: "zero", in: "0", wantErr: "zero"},
		{name: "zero decimal", in: "0.000", wantErr: "zero"},
		{name: "zero duration", in: "0s", wantErr: "zero"},
		{name: "below a nanosecond", in: "0.0000000001", wantErr: "zero"},
		{name: "negative zero", in: "-0", wantErr: "zero"},
		{name: "negative seconds", in: "-1", wantErr: "negative"},
		{name: "negative duration", in: "-1s", wantErr: "negative"},
		{name: "negative huge", in: "-99999999999999999999", wantErr: "negative"},
		{name: "just past the largest", in: "9223372036.854775808", wantErr: "too large"},
		{name: "too many seconds", in: "9223372037", wantErr: "too large"},
		{name: "overflowing seconds", in: "99999999999999999999999", wantErr: "too large"},
		{name: "overflowing duration", in: "2562048h", wantErr: "too large"},
		{name: "overflowing milliseconds", in: "9999999999999999999999ms", wantErr: "too large"},
		{name: "NaN", in: "NaN", wantErr: "not a duration"},
		{name: "Inf", in: "Inf", wantErr: "not a duration"},
		{name: "+Inf", in: "+Inf", wantErr: "not a duration"},
		{name: "exponent", in: "1e3", wantErr: "not a duration"},
		{name: "hex float", in: "0x1p-2", wantErr: "not a duration"},
		{name: "word", in: "soon", wantErr: "not a duration"},
		{name: "two dots", in: "1.5.5", wantErr: "not a duration"},
		{name: "unknown unit", in: "1x", wantErr: "not a duration"},
		{name: "unit only", in: "s", wantErr: "not a duration"},
		{name: "space before unit", in: "1 s", wantErr: "not a duration"},
		{name: "lone sign", in: "+", wantErr: "not a duration"},
		{name: "lone dot", in: ".", wantErr: "not a duration"},
		{name: "comma decimal", in: "2,5", wantErr: "not a duration"},
		{name: "long value is truncated", in: strings.Repeat("9", 60) + "x", wantErr: `"` + strings.Repeat("9", maxQuoted) + `"...`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTimeout(tc.in)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ParseTimeout(%q) = %v, %v; want %v, nil", tc.in, got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseTimeout(%q) = %v, nil; want an error", tc.in, got)
			}
			if !errors.Is(err, ErrInvalidTimeout) {
				t.Errorf("ParseTimeout(%q) error %v does not wrap ErrInvalidTimeout", tc.in, err)
			}
			if !strings.HasPrefix(err.Error(), "invalid timeout ") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseTimeout(%q) error %q, want it to contain %q", tc.in, err, tc.wantErr)
			}
		})
	}
}
