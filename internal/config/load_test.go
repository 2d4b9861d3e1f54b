package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

const exampleFile = "../../configs/proxyd.yaml"

// FuzzLoadYAML: any file either fails with lines that each name the file
// or a key, or loads, the same config every time; nothing panics.
func FuzzLoadYAML(f *testing.F) {
	if data, err := os.ReadFile(exampleFile); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"limits: {rate: 5, burst: 1}\n",
		"hosts: [{match: '*.example.com:443', rate: 1.5, burst: 2, concurrency: 1}]\n",
		"priority: {rules: [{host: a.example.com, method: get, client_cidr: 10.0.0.0/8, header: {name: X, value: y}, priority: 0}]}\n",
		"routes: [{prefix: /a/, upstream: 'https://a.example.com/v1', strip_prefix: true}]\n",
		"upstream: {retry: {on: '429,503', attempts: 2}}\n",
		"limits: &a {rate: 1}\nupstream: *a\n",
		"1: {2: 3}\n",
		"hosts: [~, 1, [2]]\n",
		"limits: {burst: 1e300, queue_size: -1e19, max_wait: 0}\n",
		"upstream: {retry: {on: [{}, [], ~]}}\n",
		"? [a]\n: b\n",
		"priority: {rules: [{header: ~, priority: ~}]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Load(Sources{File: "fuzz.yaml", Data: data})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, "  ") {
					continue // the YAML parser's detail lines of the error above
				}
				if !strings.HasPrefix(line, "fuzz.yaml") && !namesKey(line, Keys()) {
					t.Fatalf("error line %q names neither the file nor a key", line)
				}
			}
			return
		}
		again, err := Load(Sources{File: "fuzz.yaml", Data: data})
		if err != nil || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("loading twice differs: %+v, then %+v, %v", cfg, again, err)
		}
	})
}

// namesKey reports whether line starts with a key path and ": ".
func namesKey(line string, keys []string) bool {
	for _, key := range keys {
		if rest, ok := strings.CutPrefix(line, key); ok && (strings.HasPrefix(rest, ": ") || strings.HasPrefix(rest, "[")) {
			return true
		}
	}
	return false
}

// FuzzLoadEnv: any value of any variable either fails with lines naming
// the variable or a key, or loads a valid config.
func FuzzLoadEnv(f *testing.F) {
	for _, s := range []string{"5", "-1", "10s", "true", "429,503", "[{match: a.example.com}]", "[", "{}", "~", "0x10", ".nan", "1e400"} {
		f.Add(s)
	}
	keys := Keys()
	f.Fuzz(func(t *testing.T, value string) {
		for _, key := range keys {
			name := EnvName(key)
			// Load validates what it returns; the property is in the errors.
			if _, err := Load(Sources{Env: []string{name + "=" + value}}); err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					if !strings.HasPrefix(line, name+": ") && !namesKey(line, keys) {
						t.Fatalf("%s=%q: error line %q names neither %s nor a key", name, value, line, name)
					}
				}
			}
		}
	})
}
