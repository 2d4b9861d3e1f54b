package config

// Loading the configuration: embedded defaults, then the YAML file, then
// PROXYD_* environment variables, then command-line flags (docs/configuration.md, "Where values come from"). The
// command reads the file, the environment and the flags; Load takes their
// contents (Sources) and decodes them strictly.
//
// Decisions (docs/configuration.md, "Where values come from", has the user's view):
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
//     wins, as with os.Getenv. An empty value counts as unset, so
//     PROXYD_LIMITS_RATE=${RATE} with RATE unset does nothing. String keys
//     take the value verbatim; every other value is read as YAML, so
//     PROXYD_LIMITS_RATE=50, PROXYD_PRIORITY_TRUST_HEADERS=false,
//     PROXYD_UPSTREAM_RETRY_ON=429,503 and
//     PROXYD_HOSTS='[{match: api.example.com, rate: 5}]' all work.
//   - priority.rules[].method is upper-cased ("get" matches GET).
//   - Only the flags the user set override (Sources.Flags holds only
//     those); their defaults merely document the built-in defaults in --help.
//   - An error from Validate says where the bad value came from when it was
//     not a default: "limits.rate: must be >= 0, got -5 (from PROXYD_LIMITS_RATE)".

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// envPrefix starts the name of every environment variable proxyd reads.
const envPrefix = "PROXYD_"

// EnvName returns the environment variable for a key:
// "limits.queue_size" → "PROXYD_LIMITS_QUEUE_SIZE".
func EnvName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Sources are the inputs of Load, in rising precedence after the
// defaults. Load reads no file and no environment itself: the command
// does, and passes their contents.
type Sources struct {
	// File names the configuration file in messages ("" for none, and
	// then Data is ignored); Data is its content.
	File string
	Data []byte
	// Env is an os.Environ()-style "KEY=VALUE" list; only PROXYD_*
	// entries are read. When a name appears twice the first wins, as with
	// os.Getenv.
	Env []string
	// Flags are the command-line flags the user set, each overriding one
	// key.
	Flags []Flag
}

// Flag is a command-line flag that overrides a key: Name ("--listen") is
// what messages blame, Key ("listen") the key it sets, Value its text.
type Flag struct{ Name, Key, Value string }

// Load builds the configuration from the defaults (Default), then
// src.File, src.Env and src.Flags, and validates it. An error names the
// file, key, variable or flag at fault and the reason, one problem per
// line (docs/configuration.md, "Where values come from").
func Load(src Sources) (Config, error) {
	var errs []error
	from := make(map[string]string) // key → where its value came from

	var merged map[string]any
	if src.File != "" {
		m, err := parseFile(src.Data)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", src.File, err)
		}
		_, problems := checkValue(configType, "", m)
		for _, e := range problems {
			errs = append(errs, fmt.Errorf("%s: %w", src.File, e))
		}
		merged, _ = m.(map[string]any)
		for _, key := range Keys() {
			if lookupPath(merged, key) != nil {
				from[key] = src.File
			}
		}
	}

	envVals, envErrs := readEnv(src.Env, from)
	errs = append(errs, envErrs...)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}

	// Every value is known good by now: merge the layers, a higher one
	// replacing a key's value whole (lists are not merged), and decode.
	if merged == nil {
		merged = make(map[string]any)
	}
	for _, key := range slices.Sorted(maps.Keys(envVals)) {
		setPath(merged, key, envVals[key])
	}
	for _, f := range src.Flags {
		setPath(merged, f.Key, f.Value)
		from[f.Key] = f.Name
	}
	cfg := Default()
	if problems := Decode(YAML, "", merged, &cfg); len(problems) > 0 {
		return Config{}, errors.Join(problems...)
	}
	// Upper-case methods so that "get" matches GET: RFC 9110 §9.1 makes
	// methods case-sensitive, but every registered one is upper-case.
	for i := range cfg.Priority.Rules {
		cfg.Priority.Rules[i].Method = strings.ToUpper(cfg.Priority.Rules[i].Method)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, annotate(err, from)
	}
	return cfg, nil
}

// setPath sets key ("a.b.c") in m to val, making the maps on the way.
func setPath(m map[string]any, key string, val any) {
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = make(map[string]any)
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = val
}

// readEnv reads the PROXYD_* entries of env into key → value, recording
// each key's variable in from.
func readEnv(env []string, from map[string]string) (map[string]any, []error) {
	keys := make(map[string]string)
	var names []string
	for _, key := range Keys() {
		keys[EnvName(key)] = key
		names = append(names, EnvName(key))
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
			if IsServiceLink(name, raw) {
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

var configType = reflect.TypeFor[Config]()

// checkValue returns raw, the value of key (of type t; key "" is the whole
// configuration), and every problem with it (unknown keys, values of the
// wrong type), each naming its key.
func checkValue(t reflect.Type, key string, raw any) (any, []error) {
	scratch := Default()
	return raw, Decode(YAML, "", nest(key, raw), &scratch)
}

// nest wraps val into maps so that it sits at key: nest("a.b", 1) is
// {"a": {"b": 1}}.
func nest(key string, val any) any {
	if key == "" {
		return val
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
			panic("config: unknown configuration key " + key)
		}
		t = f.Type
	}
	return t
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

// annotate adds to each FieldError in err where its key's value
// came from, when it was not a default.
func annotate(err error, from map[string]string) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	var out []error
	for _, e := range j.Unwrap() {
		var fe *FieldError
		if errors.As(e, &fe) {
			base, _, _ := strings.Cut(fe.Key, "[")
			if src, ok := from[base]; ok {
				e = &FieldError{Key: fe.Key, Err: fmt.Errorf("%w (from %s)", fe.Err, src)}
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}
