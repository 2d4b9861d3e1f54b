package config

// The strict decoder: one reader of values into configuration types, for
// the configuration file and PROXYD_* variables (YAML, read by Load) and
// for the admin API's PATCH and PUT bodies (JSON, read by internal/admin).
// docs/configuration.md ("Where values come from") and docs/admin-api.md
// ("PATCH /api/v1/limits") describe what each accepts.
//
// Strict means: keys are matched exactly (case-sensitive) against the
// struct's mapstructure tags, an unknown key is a problem, and a value of
// the wrong type is a problem rather than converted ("yes" is not a bool,
// 1.5 not an integer, 8080 not a string). A null member means "not set":
// the destination keeps its value. Every problem is reported, each naming
// its key; a value that cannot be read leaves its destination unchanged.
//
// The two syntaxes differ only in leniency and in the words of a problem:
//
//   - YAML: durations are Go duration strings or the number 0; a list of
//     strings may be a comma-separated string and takes numbers as their
//     decimal form ([connect-failure, 429]); a list of integers may be a
//     comma-separated string. Problems read `limits.rate: must be a
//     number, got "fast"` and `unknown key "limits.rat" (did you mean
//     "limits.rate"?)`. A mapping's unknown keys are reported first
//     (sorted), then its fields in the struct's order.
//   - JSON: no conversions at all; numbers keep their text, so that a
//     number out of range is reported as such. Problems read `rate: wrong
//     type: got JSON string, want a number` and `rat: unknown field`, in
//     the order of the body; a name given twice is a problem (the first
//     is read). User input quoted in a problem is cut to maxQuote bytes.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Syntax is the notation a value was written in: it decides the
// decoder's leniency and the words of its problems.
type Syntax int

const (
	// YAML is the configuration file's and the PROXYD_* variables'.
	YAML Syntax = iota
	// JSON is the admin API's (values from ParseJSON).
	JSON
)

// Object is a JSON object as ParseJSON returns it: its members in order,
// a repeated name repeated.
type Object []Member

// Member is one "name": value of an Object.
type Member struct {
	Name  string
	Value any
}

// ParseJSON parses one JSON value for Decode: an object becomes an
// Object, an array a []any, a number a json.Number (its text kept), and
// strings, booleans and null their Go values. Its errors are
// encoding/json's.
func ParseJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseJSONValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func parseJSONValue(dec *json.Decoder) (any, error) {
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := t.(json.Delim)
	if !ok {
		return t, nil
	}
	switch d {
	case '{':
		obj := Object{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			name, _ := k.(string)
			v, err := parseJSONValue(dec)
			if err != nil {
				return nil, err
			}
			obj = append(obj, Member{Name: name, Value: v})
		}
		_, err = dec.Token() // }
		return obj, err
	case '[':
		list := []any{}
		for dec.More() {
			v, err := parseJSONValue(dec)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err = dec.Token() // ]
		return list, err
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// Scalar is implemented (on the pointer) by a configuration type with a
// written form of its own, read from a string or an integer: a size is
// "1MiB" or 65536. Decode hands it the value; its errors name no key.
type Scalar interface {
	// DecodeString sets the value from its written form.
	DecodeString(s string) error
	// DecodeInt sets the value from an integer.
	DecodeInt(n int64) error
	// Describe names the forms it takes, for a value of another type:
	// `a size such as 65536 or "1MiB"`.
	Describe(syntax Syntax) string
}

// DecodeError is a problem Decode found: Key names the value at fault
// ("limits.rate", "hosts[1].rps"), the message says what is wrong.
type DecodeError struct {
	Key string
	// Unread is set when the value at Key could not be read (a wrong
	// type, a number out of range, not a duration): its destination kept
	// its value, so a later check of that destination says nothing new.
	// It is not set for an unknown key or a name given twice.
	Unread bool
	msg    string
}

func (e *DecodeError) Error() string { return e.msg }

// Decode decodes raw, the value at key ("" for a whole document) written
// in syntax, onto dst, a pointer to a struct whose fields are named by
// their mapstructure tags: fields absent from raw keep their values, lists
// are replaced whole. It returns every problem, each a *DecodeError.
func Decode(syntax Syntax, key string, raw any, dst any) []error {
	d := &decoder{syntax: syntax}
	d.value(key, raw, reflect.ValueOf(dst).Elem(), "")
	return d.problems
}

var durationType = reflect.TypeFor[time.Duration]()

type decoder struct {
	syntax   Syntax
	problems []error
}

// add reports that the value at key could not be read.
func (d *decoder) add(key, format string, args ...any) {
	d.problem(true, key, format, args...)
}

func (d *decoder) problem(unread bool, key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	d.problems = append(d.problems, &DecodeError{Key: key, Unread: unread, msg: msg})
}

// The kinds of value a destination wants, as each syntax names them.
type want int

const (
	wantString want = iota
	wantBool
	wantInt
	wantNumber
	wantList
	wantStrings
	wantMapping
)

// wrongType reports raw, of the wrong type for a destination of kind w.
func (d *decoder) wrongType(key string, raw any, w want) {
	if d.syntax == JSON {
		got := jsonKind(raw)
		if n, ok := raw.(json.Number); ok {
			got += " " + clip(string(n), maxQuote)
		}
		d.add(key, "wrong type: got JSON %s, want %s", got, [...]string{"a string", "a boolean", "an integer", "a number", "an array", "an array of strings", "an object"}[w])
		return
	}
	switch w {
	case wantString:
		d.add(key, "must be a string, got %s (quote it)", describe(raw))
	case wantBool:
		d.add(key, "must be true or false, got %s", describe(raw))
	case wantInt:
		d.add(key, "must be an integer, got %s", describe(raw))
	case wantNumber:
		d.add(key, "must be a number, got %s", describe(raw))
	case wantList, wantStrings:
		d.add(key, "must be a list, got %s", describe(raw))
	case wantMapping:
		d.add(key, "must be a mapping, got %s", describe(raw))
	}
}

// value decodes raw onto v and reports whether it could. example is the
// duration example of v's field (its `example` tag; JSON only).
func (d *decoder) value(key string, raw any, v reflect.Value, example string) bool {
	t := v.Type()
	if v.CanAddr() {
		if sc, ok := v.Addr().Interface().(Scalar); ok {
			return d.scalar(key, raw, sc)
		}
	}
	switch {
	case t == durationType:
		return d.duration(key, raw, v, example)
	case t.Kind() == reflect.Pointer:
		e := reflect.New(t.Elem())
		if !v.IsNil() {
			e.Elem().Set(v.Elem())
		}
		if !d.value(key, raw, e.Elem(), example) {
			return false
		}
		v.Set(e)
		return true
	case t.Kind() == reflect.Struct:
		return d.object(key, raw, v)
	case t.Kind() == reflect.Slice:
		return d.list(key, raw, v)
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		return d.dict(key, raw, v)
	case t.Kind() == reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.wrongType(key, raw, wantString)
			return false
		}
		v.SetString(s)
	case t.Kind() == reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.wrongType(key, raw, wantBool)
			return false
		}
		v.SetBool(b)
	case v.CanInt():
		return d.integer(key, raw, v)
	case v.CanFloat():
		return d.float(key, raw, v)
	default:
		d.add(key, "cannot be set (a %s)", t) // a configuration type this decoder does not know
		return false
	}
	return true
}

// object decodes a mapping onto the struct v.
func (d *decoder) object(key string, raw any, v reflect.Value) bool {
	fields := fieldsByTag(v.Type())
	read := func(f reflect.StructField, val any) {
		d.value(joinKey(key, tagName(f)), val, v.FieldByIndex(f.Index), f.Tag.Get("example"))
	}
	switch m := raw.(type) {
	case Object:
		seen := make(map[string]int, len(m))
		for _, mem := range m {
			seen[mem.Name]++
			f, known := fields[mem.Name]
			switch {
			case !known:
				if seen[mem.Name] == 1 {
					d.unknown(key, mem.Name, fields)
				}
			case seen[mem.Name] == 2:
				d.problem(false, joinKey(key, mem.Name), "given twice")
			case seen[mem.Name] == 1 && mem.Value != nil:
				read(f, mem.Value)
			}
		}
	case map[string]any, map[any]any:
		byName := make(map[string]any)
		var unknown []string
		if sm, ok := m.(map[string]any); ok {
			byName = sm
		} else {
			var odd []string
			for k, val := range m.(map[any]any) {
				if s, ok := k.(string); ok {
					byName[s] = val
				} else {
					odd = append(odd, fmt.Sprint(k))
				}
			}
			for _, k := range slices.Sorted(slices.Values(odd)) {
				d.problems = append(d.problems, &DecodeError{Key: joinKey(key, k), msg: fmt.Sprintf("unknown key %q", joinKey(key, k))})
			}
		}
		for k := range byName {
			if _, ok := fields[k]; !ok {
				unknown = append(unknown, k)
			}
		}
		for _, k := range slices.Sorted(slices.Values(unknown)) {
			d.unknown(key, k, fields)
		}
		for f := range v.Type().Fields() {
			if val := byName[tagName(f)]; val != nil && f.IsExported() {
				read(f, val)
			}
		}
	default:
		d.wrongType(key, raw, wantMapping)
		return false
	}
	return true
}

// dict decodes a mapping onto the map v (string keys), replacing it whole.
func (d *decoder) dict(key string, raw any, v reflect.Value) bool {
	var members []Member
	switch m := raw.(type) {
	case Object:
		members = m
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(m)) {
			members = append(members, Member{Name: k, Value: m[k]})
		}
	default:
		d.wrongType(key, raw, wantMapping)
		return false
	}
	out := reflect.MakeMapWithSize(v.Type(), len(members))
	for _, mem := range members {
		k := reflect.New(v.Type().Key()).Elem()
		k.SetString(mem.Name)
		if out.MapIndex(k).IsValid() {
			d.problem(false, joinKey(key, mem.Name), "given twice")
			continue
		}
		e := reflect.New(v.Type().Elem()).Elem()
		if mem.Value == nil || d.value(joinKey(key, mem.Name), mem.Value, e, "") {
			out.SetMapIndex(k, e)
		}
	}
	v.Set(out)
	return true
}

// unknown reports a key that the struct (fields) at path does not have.
func (d *decoder) unknown(path, k string, fields map[string]reflect.StructField) {
	if d.syntax == YAML {
		d.problems = append(d.problems, &DecodeError{Key: joinKey(path, k), msg: fmt.Sprintf("unknown key %q%s", joinKey(path, k), suggestKey(path, k, fields))})
		return
	}
	why := "unknown field"
	for name := range fields {
		if strings.EqualFold(name, k) {
			why = "unknown field (names are case-sensitive)"
		}
	}
	d.problem(false, joinKey(path, clip(k, maxQuote)), "%s", why)
}

// list decodes a list onto the slice v, replacing it whole.
func (d *decoder) list(key string, raw any, v reflect.Value) bool {
	t := v.Type()
	if d.syntax == YAML {
		switch t {
		case reflect.TypeFor[[]string]():
			return d.stringList(key, raw, v)
		case reflect.TypeFor[[]int]():
			var ok bool
			if raw, ok = d.intList(key, raw); !ok {
				return false
			}
		}
	}
	items, ok := raw.([]any)
	if !ok {
		if t.Elem().Kind() == reflect.String {
			d.wrongType(key, raw, wantStrings)
			return false
		}
		d.wrongType(key, raw, wantList)
		return false
	}
	out := reflect.MakeSlice(t, len(items), len(items))
	for i, e := range items {
		d.value(fmt.Sprintf("%s[%d]", key, i), e, out.Index(i), "")
	}
	v.Set(out)
	return true
}

// stringList decodes a YAML list of strings from a list (numbers become
// their decimal form, so [429, 503] works), a comma-separated string
// ("429, 503"; blanks trimmed, empty items dropped) or a single number.
func (d *decoder) stringList(key string, raw any, v reflect.Value) bool {
	var out []string
	switch x := raw.(type) {
	case string:
		for item := range strings.SplitSeq(x, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	case int, int64, uint64:
		out = []string{fmt.Sprint(x)}
	case []any:
		out = make([]string, len(x))
		for i, e := range x {
			switch e := e.(type) {
			case string:
				out[i] = e
			case int, int64, uint64:
				out[i] = fmt.Sprint(e)
			default:
				d.add(key, "item %d must be a string, got %s", i, describe(e))
				return false
			}
		}
	default:
		d.add(key, "must be a list of strings or a comma-separated string, got %s", describe(raw))
		return false
	}
	v.Set(reflect.ValueOf(out))
	return true
}

// intList turns a comma-separated string ("443, 8443", as environment
// variables give it, or the flow form "[443, 8443]") or a single number
// into a list, whose items are then decoded as integers.
func (d *decoder) intList(key string, raw any) (any, bool) {
	switch x := raw.(type) {
	case string:
		// "[]" is the empty list (an empty variable counts as unset).
		x = strings.TrimSpace(x)
		if strings.HasPrefix(x, "[") && strings.HasSuffix(x, "]") {
			x = x[1 : len(x)-1]
		}
		out := []any{}
		for item := range strings.SplitSeq(x, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			n, err := strconv.Atoi(item)
			if err != nil {
				d.add(key, "must be a list of numbers or a comma-separated string of them, got item %q", item)
				return nil, false
			}
			out = append(out, n)
		}
		return out, true
	case int, int64, uint64:
		return []any{x}, true
	}
	return raw, true
}

// duration decodes a Go duration string ("30s"); in YAML also the number
// 0.
func (d *decoder) duration(key string, raw any, v reflect.Value, example string) bool {
	if d.syntax == JSON {
		s, ok := raw.(string)
		if !ok {
			d.wrongType(key, raw, wantString)
			return false
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			if example == "" {
				example = "30s"
			}
			d.add(key, "not a duration: %s (want e.g. %s)", quote(s), quoteList(example))
			return false
		}
		v.SetInt(int64(dur))
		return true
	}
	switch x := raw.(type) {
	case string:
		dur, err := time.ParseDuration(x)
		if err != nil {
			d.add(key, "invalid duration %q (want e.g. \"30s\", \"500ms\", \"1m30s\")", x)
			return false
		}
		v.SetInt(int64(dur))
	case int, int64, uint64, float64:
		if f, _ := toFloat(x); f != 0 {
			d.add(key, "invalid duration %v: a number needs a unit, e.g. \"%vs\"", x, x)
			return false
		}
		v.SetInt(0)
	default:
		d.add(key, "must be a duration such as \"30s\", got %s", describe(raw))
		return false
	}
	return true
}

// scalar decodes a Scalar from a string or an integer.
func (d *decoder) scalar(key string, raw any, sc Scalar) bool {
	var err error
	switch x := raw.(type) {
	case string:
		err = sc.DecodeString(x)
	case json.Number:
		n, perr := strconv.ParseInt(string(x), 10, 64)
		if perr != nil {
			d.add(key, "wrong type: got JSON number %s, want %s", clip(string(x), maxQuote), sc.Describe(JSON))
			return false
		}
		err = sc.DecodeInt(n)
	case int, int64, uint64, float64:
		n, ierr := toInt(x, reflect.TypeFor[int64]())
		if ierr != nil {
			d.add(key, "%v", ierr)
			return false
		}
		err = sc.DecodeInt(n)
	default:
		if d.syntax == JSON {
			d.add(key, "wrong type: got JSON %s, want %s", jsonKind(raw), sc.Describe(JSON))
		} else {
			d.add(key, "must be %s, got %s", sc.Describe(YAML), describe(raw))
		}
		return false
	}
	if err != nil {
		d.add(key, "%v", err)
		return false
	}
	return true
}

// quoteList quotes each item of a comma-separated list: `"1m", "1h"`.
func quoteList(s string) string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		out = append(out, strconv.Quote(strings.TrimSpace(item)))
	}
	return strings.Join(out, ", ")
}

func (d *decoder) integer(key string, raw any, v reflect.Value) bool {
	if d.syntax == JSON {
		n, ok := raw.(json.Number)
		if !ok || strings.ContainsAny(string(n), ".eE") {
			d.wrongType(key, raw, wantInt)
			return false
		}
		i, err := strconv.ParseInt(string(n), 10, v.Type().Bits())
		if err != nil {
			d.add(key, "out of range: got JSON number %s, want a %d-bit integer", clip(string(n), maxQuote), v.Type().Bits())
			return false
		}
		v.SetInt(i)
		return true
	}
	n, err := toInt(raw, v.Type())
	if err != nil {
		d.add(key, "%v", err)
		return false
	}
	v.SetInt(n)
	return true
}

func (d *decoder) float(key string, raw any, v reflect.Value) bool {
	if d.syntax == JSON {
		n, ok := raw.(json.Number)
		if !ok {
			d.wrongType(key, raw, wantNumber)
			return false
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil { // ErrRange: JSON has no bounds, float64 has
			d.add(key, "out of range: got JSON number %s, want a finite 64-bit float", clip(string(n), maxQuote))
			return false
		}
		v.SetFloat(f)
		return true
	}
	f, ok := toFloat(raw)
	if !ok {
		d.wrongType(key, raw, wantNumber)
		return false
	}
	v.SetFloat(f)
	return true
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// toInt reads a YAML integer for an integer type t.
func toInt(v any, t reflect.Type) (int64, error) {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("%d is out of range", x)
		}
		n = int64(x)
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("must be an integer, got %v", x)
		}
		if x < math.MinInt64 || x >= math.MaxInt64 {
			return 0, fmt.Errorf("%v is out of range", x)
		}
		n = int64(x)
	default:
		return 0, fmt.Errorf("must be an integer, got %s", describe(v))
	}
	if reflect.Zero(t).OverflowInt(n) {
		return 0, fmt.Errorf("%d is out of range", n)
	}
	return n, nil
}

// describe names a YAML value for a problem.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(x)
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// jsonKind names the JSON type of a value from ParseJSON.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case Object:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// tagName is a field's key: its mapstructure tag's name.
func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
	return name
}

// fieldsByTag maps a struct type's keys to its fields.
func fieldsByTag(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField, t.NumField())
	for f := range t.Fields() {
		if name := tagName(f); name != "" && name != "-" && f.IsExported() {
			m[name] = f
		}
	}
	return m
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// suggestKey returns ` (did you mean "limits.rate"?)` when a field of the
// same struct is close to k.
func suggestKey(path, k string, fields map[string]reflect.StructField) string {
	if s := closest(k, slices.Collect(maps.Keys(fields))); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", joinKey(path, s))
	}
	return ""
}

// maxQuote bounds the bytes of one user-supplied string quoted in a JSON
// problem, so that a 60 KB field does not come back as a 60 KB error.
const maxQuote = MaxQuote

// MaxQuote is how many bytes of a user-supplied string a problem quotes
// (Quote); the admin API holds its own messages to it too.
const MaxQuote = 200

// Clip is clip for other packages' messages (the admin API's).
func Clip(s string, n int) string { return clip(s, n) }

// Quote is quote for other packages' messages (the admin API's).
func Quote(s string) string { return quote(s) }

// clip returns s cut to at most n bytes at a rune boundary, marked with
// "…" and the full length when cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:i], len(s))
}

// quote is strconv.Quote of at most maxQuote bytes of s; the mark of a cut
// is outside the quotes.
func quote(s string) string {
	if len(s) <= maxQuote {
		return strconv.Quote(s)
	}
	i := maxQuote
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:i]), len(s))
}
