package main

import (
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/proxyd/proxyd/internal/config"
)

// Helpers of the documentation and example tests, which load and walk
// configurations (the loader itself is internal/config's).

// load is config.Load of a file named file (with content data), env and
// flags.
func load(file string, data []byte, env []string, flags []config.Flag) (config.Config, error) {
	return config.Load(config.Sources{File: file, Data: data, Env: env, Flags: flags})
}

// parseFile parses a YAML configuration file into maps.
func parseFile(data []byte) (any, error) {
	var m map[string]any
	err := yaml.Unmarshal(data, &m)
	return m, err
}

// lookupPath returns the value at key ("a.b") in m, or nil.
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

var durationType = reflect.TypeFor[time.Duration]()

// typeOf returns the Go type of a key of config.Keys.
func typeOf(key string) reflect.Type {
	t := reflect.TypeFor[config.Config]()
	for part := range strings.SplitSeq(key, ".") {
		for f := range t.Fields() {
			if name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ","); name == part {
				t = f.Type
				break
			}
		}
	}
	return t
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// nest wraps val into maps so that it sits at key: nest("a.b", 1) is
// {"a": {"b": 1}}.
func nest(key string, val any) map[string]any {
	parts := strings.Split(key, ".")
	for i := len(parts) - 1; i > 0; i-- {
		val = map[string]any{parts[i]: val}
	}
	return map[string]any{parts[0]: val}
}
