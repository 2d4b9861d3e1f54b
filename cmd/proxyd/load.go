package main

// Loading the configuration: embedded defaults, then the YAML file, then
// PROXYD_* environment variables, then command-line flags (docs/configuration.md, "Where values come from"). This
// is the only place that touches viper, flags and the environment.
//
// Decisions where the spec is silent:
//
//   - Keys are case-sensitive and lower-case; "Limits:" is an unknown key.
//   - A null value ("rate:" or "rate: ~") means "not set": the default, or
//     the lower layer's value, stays.
//   - Durations are Go durations ("30s", "1m30s", "500ms"). A bare number is
//     an error (is 30 seconds or nanoseconds?), except 0.
//   - Values are strictly typed: a string key needs a YAML string (quote
//     numbers, e.g. token: "12345"); an integer key rejects 1.5. The one
//     leniency: upstream.retry.on accepts numbers for status codes
//     ([connect-failure, 429, 503]) and a comma-separated string.
//   - Lists (hosts, priority.rules, routes, upstream.retry.on) set in a
//     higher layer replace the lower layer's list whole; they are not
//     merged.
//   - Environment variables: the name of key "a.b_c" is PROXYD_A_B_C. Only
//     upper-case PROXYD_* names are read; an unknown one (PROXYD_CONFIG
//     too: use --config) is an error, except the variables Kubernetes adds
//     for a Service named proxyd (PROXYD_SERVICE_HOST, PROXYD_PORT_8080_TCP…;
//     see servicelinks.go), which are skipped. When a name is repeated the first
//     wins, as with os.Getenv. An empty value counts as unset, as with
//     viper's AllowEmptyEnv(false), so PROXYD_LIMITS_RATE=${RATE} with RATE
//     unset does nothing. String keys
//     take the value verbatim; every other value is read as YAML, so
//     PROXYD_LIMITS_RATE=50, PROXYD_PRIORITY_TRUST_HEADERS=false,
//     PROXYD_UPSTREAM_RETRY_ON=429,503 and
//     PROXYD_HOSTS='[{match: api.example.com, rate: 5}]' all work.
//   - priority.rules[].method is upper-cased ("get" matches GET).
//   - Only the flags the user set override; their defaults merely document
//     the built-in defaults in --help.
//   - An error from Validate says where the bad value came from when it was
//     not a default: "limits.rate: must be >= 0, got -5 (from PROXYD_LIMITS_RATE)".

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/proxyd/proxyd/internal/config"
)

// loadOptions are the inputs of loadConfig.
type loadOptions struct {
	// File is the YAML file (--config); "" means none. When empty, a
	// --config flag set in Flags is used instead.
	File string
	// Env is an os.Environ()-style "KEY=VALUE" list; only PROXYD_* entries
	// are read. When a name appears twice the first wins, as with
	// os.Getenv.
	Env []string
	// Flags may be nil. Only flags defined by defineFlags and set by the
	// user (Changed) override.
	Flags *pflag.FlagSet
}

// envPrefix starts the name of every environment variable proxyd reads.
const envPrefix = "PROXYD_"

// flagKeys maps each configuration flag to the key it overrides.
var flagKeys = []struct{ flag, key string }{
	{"listen", "listen"},
	{"admin-listen", "admin.listen"},
	{"log-level", "log.level"},
}

// defineFlags defines --config, --listen, --admin-listen and --log-level
// on fs. The defaults shown are the built-in ones; only a flag the user
// sets overrides the file and the environment.
func defineFlags(fs *pflag.FlagSet) {
	d := config.Default()
	fs.String("config", "", "YAML configuration `file`; without it the built-in defaults apply (see configs/proxyd.yaml)")
	fs.String("listen", d.Listen, "proxy listener `host:port`; overrides the listen key and PROXYD_LISTEN")
	fs.String("admin-listen", d.Admin.Listen, "admin listener (API, metrics, health) `host:port`; overrides admin.listen and PROXYD_ADMIN_LISTEN")
	fs.String("log-level", d.Log.Level, "log `level`: debug, info, warn or error; overrides log.level and PROXYD_LOG_LEVEL")
}

// envName returns the environment variable for a key:
// "limits.queue_size" → "PROXYD_LIMITS_QUEUE_SIZE".
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// loadConfig builds the configuration from defaults, o.File, o.Env and
// o.Flags, in rising precedence, and validates it. An error names the file,
// key, variable or flag at fault and the reason, one problem per line.
func loadConfig(o loadOptions) (config.Config, error) {
	cfg, _, err := loadConfigSum(o)
	return cfg, err
}

// loadConfigSum is loadConfig that also returns the SHA-256 of the file it
// read (nil without a file): the file watcher's starting point, so that an
// edit made between this read and the watch is not taken as the baseline.
func loadConfigSum(o loadOptions) (config.Config, []byte, error) {
	file := o.File
	if file == "" && o.Flags != nil {
		if f := o.Flags.Lookup("config"); f != nil && f.Changed {
			file = f.Value.String()
		}
	}
	var data []byte
	if file != "" {
		var err error
		if data, err = os.ReadFile(file); err != nil {
			var pe *fs.PathError
			switch {
			case errors.Is(err, fs.ErrNotExist):
				err = errors.New("no such file")
			case errors.As(err, &pe):
				err = pe.Err
			}
			return config.Config{}, nil, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	cfg, err := load(file, data, o.Env, o.Flags)
	if err != nil || file == "" {
		return cfg, nil, err
	}
	sum := sha256.Sum256(data)
	return cfg, sum[:], nil
}

// load is loadConfig after the file (named file, "" for none) was read.
func load(file string, data []byte, env []string, flags *pflag.FlagSet) (config.Config, error) {
	var errs []error
	from := make(map[string]string) // key → where its value came from

	var fileMap map[string]any
	if file != "" {
		m, err := parseFile(data)
		if err != nil {
			return config.Config{}, fmt.Errorf("%s: %w", file, err)
		}
		val, problems := checkValue(configType, "", m)
		for _, e := range problems {
			errs = append(errs, fmt.Errorf("%s: %w", file, e))
		}
		fileMap, _ = val.(map[string]any)
		for _, key := range config.Keys() {
			if lookupPath(fileMap, key) != nil {
				from[key] = file
			}
		}
	}

	envVals, envErrs := readEnv(env, from)
	errs = append(errs, envErrs...)

	flagVals := make(map[string]string)
	if flags != nil {
		for _, fk := range flagKeys {
			if f := flags.Lookup(fk.flag); f != nil && f.Changed {
				flagVals[fk.key] = f.Value.String()
				from[fk.key] = "--" + fk.flag
			}
		}
	}
	if len(errs) > 0 {
		return config.Config{}, errors.Join(errs...)
	}

	// Every value is known good by now; viper merges the layers.
	v := viper.New()
	if fileMap != nil {
		if err := v.MergeConfigMap(fileMap); err != nil {
			return config.Config{}, err
		}
	}
	for key, val := range envVals {
		v.Set(key, val)
	}
	for key, val := range flagVals {
		v.Set(key, val)
	}
	cfg := config.Default()
	if err := decode(v.AllSettings(), &cfg); err != nil {
		return config.Config{}, errors.Join(decodeProblems(err)...)
	}
	// Upper-case methods so that "get" matches GET: RFC 9110 §9.1 makes
	// methods case-sensitive, but every registered one is upper-case.
	for i := range cfg.Priority.Rules {
		cfg.Priority.Rules[i].Method = strings.ToUpper(cfg.Priority.Rules[i].Method)
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, annotate(err, from)
	}
	return cfg, nil
}

// readEnv reads the PROXYD_* entries of env into key → value, recording
// each key's variable in from.
func readEnv(env []string, from map[string]string) (map[string]any, []error) {
	keys := make(map[string]string)
	var names []string
	for _, key := range config.Keys() {
		keys[envName(key)] = key
		names = append(names, envName(key))
	}
	vals := make(map[string]any)
	seen := make(map[string]bool)
	var errs []error
	for _, kv := range env {
		name, raw, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || seen[name] {
			continue
		}
		seen[name] = true
		key, ok := keys[name]
		if !ok {
			if isServiceLink(name, raw) {
				continue // Kubernetes' doing, not configuration (servicelinks.go)
			}
			hint := serviceLinkHint(name)
			if hint == "" {
				hint = suggestEnv(name, names)
			}
			errs = append(errs, fmt.Errorf("unknown environment variable %s%s", name, hint))
			continue
		}
		if raw == "" {
			continue
		}
		t := typeOf(key)
		var val any = raw
		// A list of strings is comma-separated unless written as a YAML
		// flow list: PROXYD_EGRESS_ALLOW=*.corp.example,10.0.0.0/8 must
		// not be read as YAML (a leading '*' is an alias there).
		plainList := t == reflect.TypeFor[[]string]() && !strings.HasPrefix(strings.TrimSpace(raw), "[")
		if t.Kind() != reflect.String && !plainList {
			var err error
			if val, err = parseYAML([]byte(raw)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", name, key, err))
				continue
			}
		}
		if val == nil {
			continue
		}
		val, problems := checkValue(t, key, val)
		for _, e := range problems {
			errs = append(errs, fmt.Errorf("%s: %w", name, e))
		}
		if len(problems) == 0 {
			vals[key] = val
			from[key] = name
		}
	}
	return vals, errs
}

// parseFile parses a configuration file: one YAML document whose top level
// is a mapping. An empty file is an empty mapping.
func parseFile(data []byte) (any, error) {
	v, err := parseYAML(data)
	switch {
	case err != nil:
		return nil, err
	case v == nil:
		return map[string]any{}, nil
	}
	switch v.(type) {
	case map[string]any, map[any]any:
		return v, nil
	}
	return nil, fmt.Errorf("the top level must be a mapping of keys, got %s", describe(v))
}

// parseYAML decodes exactly one YAML document; empty input gives nil.
func parseYAML(data []byte) (any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, errors.New("more than one YAML document")
	}
	return v, nil
}

var (
	configType   = reflect.TypeFor[config.Config]()
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[config.ByteSize]()
)

// checkValue returns raw, the value of key (of type t; key "" is the whole
// configuration), shaped for decoding, and every problem with it: unknown
// keys first, then values of the wrong type.
func checkValue(t reflect.Type, key string, raw any) (any, []error) {
	var errs []error
	val := shape(t, key, raw, &errs)
	if len(errs) > 0 {
		return val, errs
	}
	scratch := config.Default()
	if err := decode(nest(key, val), &scratch); err != nil {
		return val, decodeProblems(err)
	}
	return val, nil
}

// nest wraps val into maps so that it sits at key: nest("a.b", 1) is
// {"a": {"b": 1}}.
func nest(key string, val any) map[string]any {
	if key == "" {
		m, _ := val.(map[string]any)
		return m
	}
	parts := strings.Split(key, ".")
	for i := len(parts) - 1; i > 0; i-- {
		val = map[string]any{parts[i]: val}
	}
	return map[string]any{parts[0]: val}
}

// lookupPath returns the value at key in m, or nil.
func lookupPath(m map[string]any, key string) any {
	var cur any = m
	for part := range strings.SplitSeq(key, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[part]
	}
	return cur
}

// typeOf returns the Go type of a key from config.Keys.
func typeOf(key string) reflect.Type {
	t := configType
	for part := range strings.SplitSeq(key, ".") {
		f, ok := fieldsByTag(t)[part]
		if !ok {
			panic("proxyd: unknown configuration key " + key)
		}
		t = f.Type
	}
	return t
}

// fieldsByTag maps a struct type's mapstructure names to its fields.
func fieldsByTag(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if name != "" && name != "-" && f.IsExported() {
			m[name] = f
		}
	}
	return m
}

// shape returns raw, the value at path of type t, ready to decode: maps
// with string keys, nulls inside mappings dropped (null means "not set").
// It appends to errs every key that t does not have, and every null entry
// of a list of mappings. Shapes that do not fit t are left to decode to
// report.
func shape(t reflect.Type, path string, raw any, errs *[]error) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && t != durationType:
		m, ok := stringMap(raw, path, errs)
		if !ok {
			return raw
		}
		fields := fieldsByTag(t)
		out := make(map[string]any, len(m))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			f, known := fields[k]
			if !known {
				*errs = append(*errs, fmt.Errorf("unknown key %q%s", joinKey(path, k), suggestKey(path, k, fields)))
				continue
			}
			if m[k] != nil {
				out[k] = shape(f.Type, joinKey(path, k), m[k], errs)
			}
		}
		return out
	case t.Kind() == reflect.Slice && deref(t.Elem()).Kind() == reflect.Struct:
		list, ok := raw.([]any)
		if !ok {
			return raw
		}
		out := make([]any, len(list))
		for i, e := range list {
			p := fmt.Sprintf("%s[%d]", path, i)
			if e == nil {
				*errs = append(*errs, fmt.Errorf("%s: must be a mapping, got null", p))
			}
			out[i] = shape(t.Elem(), p, e, errs)
		}
		return out
	}
	return raw
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// stringMap returns raw as a map[string]any when it is a mapping; a
// non-string key is reported as unknown.
func stringMap(raw any, path string, errs *[]error) (map[string]any, bool) {
	switch m := raw.(type) {
	case map[string]any:
		return m, true
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			if s, ok := k.(string); ok {
				out[s] = v
			} else {
				*errs = append(*errs, fmt.Errorf("unknown key %q", joinKey(path, fmt.Sprint(k))))
			}
		}
		return out, true
	}
	return nil, false
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
	var names []string
	for name := range fields {
		names = append(names, name)
	}
	if s := closest(k, names); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", joinKey(path, s))
	}
	return ""
}

// suggestEnv returns " (did you mean PROXYD_X?)" when one of names, all
// starting with envPrefix, is close to name.
func suggestEnv(name string, names []string) string {
	var rest []string
	for _, n := range names {
		rest = append(rest, strings.TrimPrefix(n, envPrefix))
	}
	if s := closest(strings.TrimPrefix(name, envPrefix), rest); s != "" {
		return " (did you mean " + envPrefix + s + "?)"
	}
	return ""
}

// closest returns the name nearest to s (case-insensitive edit distance at
// most 2, or a third of its length for long names; a name that s, three
// bytes or more, abbreviates counts as distance 1), or "".
func closest(s string, names []string) string {
	best, bestD, bestRaw := "", math.MaxInt, math.MaxInt
	ls := strings.ToLower(s)
	for _, n := range slices.Sorted(slices.Values(names)) {
		ln := strings.ToLower(n)
		raw := editDistance(ls, ln)
		d := raw
		if len(ls) >= 3 && strings.HasPrefix(ln, ls) {
			d = min(d, 1)
		}
		if d < bestD || d == bestD && raw < bestRaw {
			best, bestD, bestRaw = n, d, raw
		}
	}
	if bestD <= max(2, len(s)/3) {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// decode decodes in onto out (which holds the defaults) strictly: exact
// key names, no unknown keys, types as described at the top of this file.
func decode(in map[string]any, out *config.Config) error {
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
			sizeHook,
			stringListHook,
			intListHook,
			strictHook,
		),
		ErrorUnused: true,
		MatchName:   func(mapKey, fieldName string) bool { return mapKey == fieldName },
		Result:      out,
	})
	if err != nil {
		return err
	}
	return d.Decode(in)
}

// durationHook decodes a Go duration string ("30s") or the number 0.
func durationHook(from, to reflect.Value) (any, error) {
	if to.Type() != durationType || from.Type() == durationType {
		return from.Interface(), nil
	}
	switch v := from.Interface().(type) {
	case string:
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"500ms\", \"1m30s\")", v)
		}
		return d, nil
	case int, int64, uint64, float64:
		if f, _ := toFloat(v); f == 0 {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("invalid duration %v: a number needs a unit, e.g. \"%vs\"", v, v)
	default:
		return nil, fmt.Errorf("must be a duration such as \"30s\", got %s", describe(v))
	}
}

// sizeHook decodes a size (hosts[].cost.max_body): a number of bytes
// (65536) or a string with a binary unit ("512KiB", "1MiB";
// config.ParseByteSize).
func sizeHook(from, to reflect.Value) (any, error) {
	if to.Type() != sizeType || from.Type() == sizeType {
		return from.Interface(), nil
	}
	switch v := from.Interface().(type) {
	case string:
		return config.ParseByteSize(v)
	case int, int64, uint64, float64:
		n, err := toInt(v, reflect.TypeFor[int64]())
		if err != nil {
			return nil, err
		}
		return config.ByteSize(n.(int64)), nil
	default:
		return nil, fmt.Errorf("must be a size such as 65536 or \"1MiB\", got %s", describe(v))
	}
}

// stringListHook decodes a list of strings from a YAML list (numbers
// become their decimal form, so [429, 503] works), a comma-separated string
// ("429, 503"; blanks trimmed, empty items dropped) or a single number.
func stringListHook(from, to reflect.Value) (any, error) {
	if to.Type() != reflect.TypeFor[[]string]() || from.Type() == to.Type() {
		return from.Interface(), nil
	}
	switch v := from.Interface().(type) {
	case string:
		var out []string
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		return out, nil
	case int, int64, uint64:
		return []string{fmt.Sprint(v)}, nil
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			switch e := e.(type) {
			case string:
				out[i] = e
			case int, int64, uint64:
				out[i] = fmt.Sprint(e)
			default:
				return nil, fmt.Errorf("item %d must be a string, got %s", i, describe(e))
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("must be a list of strings or a comma-separated string, got %s", describe(v))
	}
}

// intListHook decodes a list of integers (egress.connect_ports) from a
// YAML list, a comma-separated string ("443, 8443", as environment
// variables give it) or a single number. Items go on to strictHook, which
// rejects what is not a whole number.
func intListHook(from, to reflect.Value) (any, error) {
	if to.Type() != reflect.TypeFor[[]int]() || from.Type() == to.Type() {
		return from.Interface(), nil
	}
	switch v := from.Interface().(type) {
	case string:
		// "443,8443", or the YAML flow form "[443, 8443]"; "[]" is the
		// empty list (an empty variable counts as unset).
		v = strings.TrimSpace(v)
		if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
			v = v[1 : len(v)-1]
		}
		out := []any{}
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			n, err := strconv.Atoi(item)
			if err != nil {
				return nil, fmt.Errorf("must be a list of numbers or a comma-separated string of them, got item %q", item)
			}
			out = append(out, n)
		}
		return out, nil
	case int, int64, uint64:
		return []any{v}, nil
	}
	return from.Interface(), nil
}

// strictHook rejects values of the wrong type instead of converting them
// as mapstructure's weak typing would ("yes" is not a bool, 1.5 not an
// int, 8080 not a string).
func strictHook(from, to reflect.Value) (any, error) {
	data := from.Interface()
	t := to.Type()
	if from.Type() == t || t.Kind() == reflect.Pointer {
		return data, nil
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := data.(string); !ok {
			return nil, fmt.Errorf("must be a string, got %s (quote it)", describe(data))
		}
	case reflect.Bool:
		if _, ok := data.(bool); !ok {
			return nil, fmt.Errorf("must be true or false, got %s", describe(data))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return toInt(data, t)
	case reflect.Float32, reflect.Float64:
		f, ok := toFloat(data)
		if !ok {
			return nil, fmt.Errorf("must be a number, got %s", describe(data))
		}
		return f, nil
	case reflect.Slice:
		if _, ok := data.([]any); !ok {
			return nil, fmt.Errorf("must be a list, got %s", describe(data))
		}
	case reflect.Struct:
		if _, ok := data.(map[string]any); !ok {
			return nil, fmt.Errorf("must be a mapping, got %s", describe(data))
		}
	}
	return data, nil
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

func toInt(v any, t reflect.Type) (any, error) {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("%d is out of range", x)
		}
		n = int64(x)
	case float64:
		if x != math.Trunc(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("must be an integer, got %v", x)
		}
		if x < math.MinInt64 || x >= math.MaxInt64 {
			return nil, fmt.Errorf("%v is out of range", x)
		}
		n = int64(x)
	default:
		return nil, fmt.Errorf("must be an integer, got %s", describe(v))
	}
	if reflect.Zero(t).OverflowInt(n) {
		return nil, fmt.Errorf("%d is out of range", n)
	}
	return n, nil
}

// describe names a YAML value for an error message.
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

// decodeProblems turns a mapstructure error into one "key: reason" error
// per problem.
func decodeProblems(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case *mapstructure.DecodeError:
			var nested *mapstructure.DecodeError
			switch {
			case errors.As(x.Unwrap(), &nested):
				walk(x.Unwrap())
			case x.Name() == "":
				out = append(out, x.Unwrap())
			default:
				out = append(out, fmt.Errorf("%s: %w", x.Name(), x.Unwrap()))
			}
		default:
			if u := errors.Unwrap(e); u != nil {
				walk(u)
			} else {
				out = append(out, e)
			}
		}
	}
	walk(err)
	return out
}

// annotate adds to each config.FieldError in err where its key's value
// came from, when it was not a default.
func annotate(err error, from map[string]string) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	var out []error
	for _, e := range j.Unwrap() {
		var fe *config.FieldError
		if errors.As(e, &fe) {
			base, _, _ := strings.Cut(fe.Key, "[")
			if src, ok := from[base]; ok {
				e = &config.FieldError{Key: fe.Key, Err: fmt.Errorf("%w (from %s)", fe.Err, src)}
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}
