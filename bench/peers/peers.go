package peers

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"
)

//go:embed *.tmpl
var files embed.FS

// Data fills a template.
type Data struct {
	// Dir is a private directory for the peer's pid file, temp files and
	// error log.
	Dir string
	// Port the peer listens on, on 127.0.0.1.
	Port int
	// Upstream is the host:port the peer forwards to (reverse proxies).
	Upstream string
	// Pool is the most idle keep-alive connections kept to the upstream.
	Pool int
	// Rate and Burst set nginx limit_req (requests per second, and how
	// many excess requests wait); Rate 0 means no limit.
	Rate, Burst int
	// MaxConn and ServiceTime describe haproxy's priority setup: at most
	// MaxConn requests at the upstream, each served in ServiceTime.
	MaxConn     int
	ServiceTime time.Duration
	// FDLimit is the file descriptor limit the peer runs under.
	FDLimit int
}

// WorkerConnections is nginx's worker_connections for FDLimit: each
// worker has the whole limit, less some for its own files.
func (d Data) WorkerConnections() int { return max(1024, d.FDLimit-500) }

// Names lists the templates.
func Names() []string {
	ents, _ := files.ReadDir(".")
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// Render fills template name (e.g. "nginx.conf.tmpl") with d and writes the
// result into d.Dir under the name without ".tmpl"; it returns that path.
func Render(name string, d Data) (string, error) {
	b, err := Text(name, d)
	if err != nil {
		return "", err
	}
	path := filepath.Join(d.Dir, name[:len(name)-len(".tmpl")])
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// Text fills template name with d.
func Text(name string, d Data) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").ParseFS(files, name)
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("peers: %s: %w", name, err)
	}
	return buf.Bytes(), nil
}
