package config

import (
	"strings"
	"testing"
)

// serviceLinksProxyd is what the kubelet adds to every pod of a namespace
// holding a Service named proxyd with ClusterIP 10.96.0.10 and ports
// "proxy" 8080 and "admin" 9090 (issue 25: with these, proxyd exited 2).
var serviceLinksProxyd = []string{
	"PROXYD_SERVICE_HOST=10.96.0.10",
	"PROXYD_SERVICE_PORT=8080",
	"PROXYD_SERVICE_PORT_PROXY=8080",
	"PROXYD_SERVICE_PORT_ADMIN=9090",
	"PROXYD_PORT=tcp://10.96.0.10:8080",
	"PROXYD_PORT_8080_TCP=tcp://10.96.0.10:8080",
	"PROXYD_PORT_8080_TCP_PROTO=tcp",
	"PROXYD_PORT_8080_TCP_PORT=8080",
	"PROXYD_PORT_8080_TCP_ADDR=10.96.0.10",
	"PROXYD_PORT_9090_TCP=tcp://10.96.0.10:9090",
	"PROXYD_PORT_9090_TCP_PROTO=tcp",
	"PROXYD_PORT_9090_TCP_PORT=9090",
	"PROXYD_PORT_9090_TCP_ADDR=10.96.0.10",
}

// TestNoKeyLooksLikeAServiceLink: a configuration key whose variable had
// a service link's name would be ambiguous (the key is read first, so
// Kubernetes' value would become configuration).
func TestNoKeyLooksLikeAServiceLink(t *testing.T) {
	for _, key := range Keys() {
		if serviceLinkName.MatchString(EnvName(key)) {
			t.Errorf("key %s: its variable %s has the name of a Kubernetes service link", key, EnvName(key))
		}
	}
}

func TestIsServiceLink(t *testing.T) {
	for _, tc := range []struct {
		kv   string
		want bool
	}{
		{"PROXYD_SERVICE_HOST=10.96.0.10", true},
		{"PROXYD_SERVICE_HOST=", false},
		{"PROXYD_SERVICE_PORT=08080", false},
		{"PROXYD_SERVICE_PORT=0", false},
		{"PROXYD_SERVICE_PORT_=8080", false},
		{"PROXYD_SERVICE_PORT_proxy=8080", false},
		{"PROXYD_PORT=tcp://10.96.0.10", false},
		{"PROXYD_PORT=http://10.96.0.10:8080", false},
		{"PROXYD_PORT=tcp://proxyd:8080", false},
		{"PROXYD_PORT_8080_TCP=tcp://10.96.0.10:9090", false},
		{"PROXYD_PORT_8080_TCP_PROTO=TCP", false},
		{"PROXYD_PORT_8080_TCP_ADDR=proxyd", false},
		{"PROXYD_PORT_8080_tcp=tcp://10.96.0.10:8080", false},
		{"PROXYD_PORT_8080_TCP_ADDR=10.96.0.10", true},
		{"proxyd_port=tcp://10.96.0.10:8080", false},
	} {
		name, value, _ := strings.Cut(tc.kv, "=")
		if got := IsServiceLink(name, value); got != tc.want {
			t.Errorf("IsServiceLink(%q, %q) = %v, want %v", name, value, got, tc.want)
		}
	}
	for _, kv := range serviceLinksProxyd {
		name, value, _ := strings.Cut(kv, "=")
		if !IsServiceLink(name, value) {
			t.Errorf("IsServiceLink(%q, %q) = false", name, value)
		}
	}
}
