package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// decodeYAML decodes a YAML document onto dst as Load does.
func decodeYAML(t *testing.T, doc string, dst any) []error {
	t.Helper()
	var raw any
	if err := yaml.Unmarshal([]byte(doc), &raw); err != nil {
		t.Fatal(err)
	}
	return Decode(YAML, "", raw, dst)
}

// decodeJSON decodes a JSON document onto dst as the admin API does.
func decodeJSON(t *testing.T, doc string, dst any) []error {
	t.Helper()
	raw, err := ParseJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return Decode(JSON, "", raw, dst)
}

func messages(errs []error) string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return strings.Join(out, "\n")
}

// TestDecodeSyntaxes: one decoder, the same problems found in a file and
// in an API body, each worded in its syntax's terms and naming its key.
func TestDecodeSyntaxes(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, json   string
		wantYAML, wantJSON string
	}{
		{"string as number", `{limits: {rate: fast}}`, `{"limits":{"rate":"fast"}}`,
			`limits.rate: must be a number, got "fast"`, `limits.rate: wrong type: got JSON string, want a number`},
		{"fraction as integer", `{limits: {burst: 1.5}}`, `{"limits":{"burst":1.5}}`,
			`limits.burst: must be an integer, got 1.5`, `limits.burst: wrong type: got JSON number 1.5, want an integer`},
		{"integer out of range", `{limits: {burst: 18446744073709551615}}`, `{"limits":{"burst":18446744073709551615}}`,
			`limits.burst: 18446744073709551615 is out of range`, `limits.burst: out of range: got JSON number 18446744073709551615, want a 64-bit integer`},
		{"bad duration", `{limits: {max_wait: soon}}`, `{"limits":{"max_wait":"soon"}}`,
			`limits.max_wait: invalid duration "soon" (want e.g. "30s", "500ms", "1m30s")`, `limits.max_wait: not a duration: "soon" (want e.g. "30s")`},
		{"duration example of the field", `{limits: {quotas: [{limit: 1, per: 90s7}]}}`, `{"limits":{"quotas":[{"limit":1,"per":"90s7"}]}}`,
			`limits.quotas[0].per: invalid duration "90s7" (want e.g. "30s", "500ms", "1m30s")`, `limits.quotas[0].per: not a duration: "90s7" (want e.g. "1m", "1h", "24h")`},
		{"entry not a mapping", `{hosts: [5]}`, `{"hosts":[5]}`,
			`hosts[0]: must be a mapping, got 5`, `hosts[0]: wrong type: got JSON number 5, want an object`},
		{"null entry", `{hosts: [~]}`, `{"hosts":[null]}`,
			`hosts[0]: must be a mapping, got null`, `hosts[0]: wrong type: got JSON null, want an object`},
		{"unknown key", `{limits: {rat: 5}}`, `{"limits":{"rat":5}}`,
			`unknown key "limits.rat" (did you mean "limits.rate"?)`, `limits.rat: unknown field`},
		{"key case", `{Limits: {}}`, `{"Limits":{}}`,
			`unknown key "Limits" (did you mean "limits"?)`, `Limits: unknown field (names are case-sensitive)`},
		{"null is not set", `{limits: {rate: ~}}`, `{"limits":{"rate":null}}`, ``, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y, j := Default(), Default()
			if got := messages(decodeYAML(t, tc.yaml, &y)); got != tc.wantYAML {
				t.Errorf("YAML: %q, want %q", got, tc.wantYAML)
			}
			if got := messages(decodeJSON(t, tc.json, &j)); got != tc.wantJSON {
				t.Errorf("JSON: %q, want %q", got, tc.wantJSON)
			}
			// Both decode alike; a value that cannot be read leaves its
			// destination alone (a list keeps the entry's place).
			d := Default().Limits
			if !reflect.DeepEqual(y, j) || y.Limits.Rate != d.Rate || y.Limits.Burst != d.Burst || y.Limits.MaxWait != d.MaxWait {
				t.Errorf("decoded differently or changed by a problem:\nYAML %+v\nJSON %+v", y.Limits, j.Limits)
			}
		})
	}
}

// TestDecodeOrder: a YAML mapping reports its unknown keys first, sorted,
// then its fields in the struct's order; a JSON object reports in the
// order of the body, and a name given twice is read once.
func TestDecodeOrder(t *testing.T) {
	var y Config
	got := messages(decodeYAML(t, "log: {lvl: x}\nlimits: {rate: x, brust: 1, rat: 2, max_wait: y}\nlisten: 1\n", &y))
	want := `unknown key "limits.brust" (did you mean "limits.burst"?)` + "\n" +
		`unknown key "limits.rat" (did you mean "limits.rate"?)` + "\n" +
		`limits.rate: must be a number, got "x"` + "\n" +
		`limits.max_wait: invalid duration "y" (want e.g. "30s", "500ms", "1m30s")` + "\n" +
		`unknown key "log.lvl" (did you mean "log.level"?)`
	if !strings.HasPrefix(got, `listen: must be a string, got 1 (quote it)`+"\n") || !strings.HasSuffix(got, want) {
		t.Errorf("YAML problems:\n%s\nwant listen's first, then:\n%s", got, want)
	}

	var j Limits
	got = messages(decodeJSON(t, `{"rate":1,"Burst":2,"max_wait":3,"rate":4,"rate":5,"x":1,"x":2}`, &j))
	want = "Burst: unknown field (names are case-sensitive)\nmax_wait: wrong type: got JSON number 3, want a string\nrate: given twice\nx: unknown field"
	if got != want || j.Rate != 1 {
		t.Errorf("JSON problems:\n%s\nwant:\n%s\n(rate %v, want the first, 1)", got, want, j.Rate)
	}
}

// TestDecodeUnread: only the problems that left a value unread are
// marked so (the admin API does not validate what they left in place).
func TestDecodeUnread(t *testing.T) {
	var l Limits
	var unread []string
	for _, e := range decodeJSON(t, `{"rate":"x","quotas":[5,{"limit":1,"per":"soon"}],"rat":1,"burst":1,"burst":2}`, &l) {
		var de *DecodeError
		if !errors.As(e, &de) {
			t.Fatalf("%v is not a *DecodeError", e)
		}
		if de.Unread {
			unread = append(unread, de.Key)
		}
	}
	if want := []string{"rate", "quotas[0]", "quotas[1].per"}; !reflect.DeepEqual(unread, want) {
		t.Errorf("unread keys %q, want %q", unread, want)
	}
	if len(l.Quotas) != 2 || l.Quotas[1] != (Quota{Limit: 1}) {
		t.Errorf("quotas %+v: an entry that cannot be read keeps its place", l.Quotas)
	}
}

// TestDecodeJSONBounded: a problem quotes at most maxQuote bytes of what
// it was given.
func TestDecodeJSONBounded(t *testing.T) {
	long := strings.Repeat("a", 10_000)
	var l Limits
	got := messages(decodeJSON(t, `{"`+long+`":1,"max_wait":"`+long+`","rate":1`+strings.Repeat("0", 10_000)+`}`, &l))
	if len(got) > 3*(maxQuote+100) || !strings.Contains(got, "(10000 bytes)") {
		t.Errorf("problems of %d bytes: %.400s", len(got), got)
	}
}

// TestDecodeMap: a map-valued key decodes member by member.
func TestDecodeMap(t *testing.T) {
	var dst struct {
		Labels map[string]time.Duration `mapstructure:"labels"`
	}
	if errs := decodeYAML(t, "labels: {a: 1s, b: x}\n", &dst); messages(errs) != `labels.b: invalid duration "x" (want e.g. "30s", "500ms", "1m30s")` || dst.Labels["a"] != time.Second || len(dst.Labels) != 1 {
		t.Errorf("%v, %v", errs, dst.Labels)
	}
}

// TestLoadReadsNoFile: Sources.File only names the content in messages;
// Load reads neither files nor the process environment.
func TestLoadReadsNoFile(t *testing.T) {
	t.Setenv("PROXYD_LIMITS_RATE", "-1")
	cfg, err := Load(Sources{File: "/nonexistent/proxyd.yaml", Data: []byte("limits: {rate: 5}\n")})
	if err != nil || cfg.Limits.Rate != 5 {
		t.Fatalf("Load = %v, %v; want rate 5 from Data", cfg.Limits.Rate, err)
	}
	_, err = Load(Sources{File: "f.yaml", Data: []byte("log: {level: warn}\n"), Env: []string{"PROXYD_LOG_LEVEL=debug"},
		Flags: []Flag{{Name: "--log-level", Key: "log.level", Value: "loud"}}})
	if want := `log.level: must be one of debug, info, warn, error; got "loud" (from --log-level)`; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %s", err, want)
	}
}

// size is a Scalar as config.ByteSize is one: "2KiB" or a number of bytes.
type size int64

func (s *size) DecodeString(v string) error {
	n, ok := strings.CutSuffix(v, "KiB")
	if !ok {
		return errors.New(`invalid size "` + v + `"`)
	}
	var k int64
	for _, c := range n {
		k = k*10 + int64(c-'0')
	}
	*s = size(k << 10)
	return nil
}

func (s *size) DecodeInt(n int64) error { *s = size(n); return nil }

func (size) Describe(syntax Syntax) string {
	if syntax == JSON {
		return `a size ("512KiB") or an integer of bytes`
	}
	return `a size such as 65536 or "512KiB"`
}

// TestDecodeScalar: a type with its own written form reads it from a
// string or an integer, and names its forms when given something else;
// a []string in JSON wants an array of strings.
func TestDecodeScalar(t *testing.T) {
	type dst struct {
		Max   *size    `mapstructure:"max"`
		Paths []string `mapstructure:"paths"`
	}
	for _, tc := range []struct {
		syntax Syntax
		doc    string
		want   string
		max    size
	}{
		{YAML, "max: 2KiB", "", 2048},
		{YAML, "max: 300", "", 300},
		{YAML, "max: 1.5", "max: must be an integer, got 1.5", 0},
		{YAML, "max: [1]", `max: must be a size such as 65536 or "512KiB", got a list`, 0},
		{YAML, "max: 1MB", `max: invalid size "1MB"`, 0},
		{JSON, `{"max":"2KiB"}`, "", 2048},
		{JSON, `{"max":300}`, "", 300},
		{JSON, `{"max":1.5}`, `max: wrong type: got JSON number 1.5, want a size ("512KiB") or an integer of bytes`, 0},
		{JSON, `{"max":true}`, `max: wrong type: got JSON boolean, want a size ("512KiB") or an integer of bytes`, 0},
		{JSON, `{"paths":"a.b"}`, `paths: wrong type: got JSON string, want an array of strings`, 0},
		{JSON, `{"paths":["a",5]}`, `paths[1]: wrong type: got JSON number 5, want a string`, 0},
	} {
		var d dst
		var errs []error
		if tc.syntax == JSON {
			errs = decodeJSON(t, tc.doc, &d)
		} else {
			errs = decodeYAML(t, tc.doc, &d)
		}
		var max size
		if d.Max != nil {
			max = *d.Max
		}
		if got := messages(errs); got != tc.want || max != tc.max {
			t.Errorf("%s: %q, max %d; want %q, max %d", tc.doc, got, max, tc.want, tc.max)
		}
	}
}
