package admin

// Documentation tests: docs/openapi.yaml, docs/metrics.md, docs/alerts.yaml
// and docs/grafana-dashboard.json are checked against the code, so that
// the operator documentation cannot drift from what is served.
//
//   - every route in openapi.yaml is served with a documented status, and
//     every method a documented path serves is documented;
//   - the Limits, HostRule, Queue and Error schemas list exactly the JSON
//     fields sent;
//   - every proxyd_ metric named in the alerts, the dashboard and the
//     Markdown docs is one documented in metrics.md;
//   - every metric family the real registry exposes is documented in
//     metrics.md with its type and labels, and nothing more is documented.

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.yaml.in/yaml/v3"

	"github.com/proxyd/proxyd/internal/config"
	"github.com/proxyd/proxyd/internal/dispatch"
	"github.com/proxyd/proxyd/internal/metrics"
	"github.com/proxyd/proxyd/internal/outcome"
	"github.com/proxyd/proxyd/internal/store"
)

// docsDir is the repository's docs/ folder, from this package's directory.
const docsDir = "../../docs"

const specToken = "s3cret"

// newSpecBackend returns a fakeBackend with fixed, fully populated state:
// every optional JSON field is present, so the schema comparison sees them
// all.
func newSpecBackend() *fakeBackend {
	rate, burst, conc := 10.0, 10, 5
	l := config.Default().Limits
	l.Quotas = []config.Quota{{Limit: 10000, Per: 24 * time.Hour}}
	return &fakeBackend{
		l:     l,
		hosts: []config.HostRule{{Match: "api.example.com", Rate: &rate, Burst: &burst, Concurrency: &conc, Quotas: []config.Quota{{Limit: 500, Per: time.Minute, Unit: config.QuotaRequests}}, Cost: &config.Cost{}, SharedConcurrency: true}},
	}
}

// newSpecRegistry builds the registry as cmd/proxyd does: the Go and
// process collectors and internal/metrics.
func newSpecRegistry(t *testing.T, stats func() dispatch.Stats) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		t.Fatal(err)
	}
	m, err := metrics.New(reg, metrics.Deps{Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	// A request priced in tokens whose answer reported its usage, so that
	// proxyd_cost_estimate_error_ratio (by rule, no series until then) is
	// exposed.
	m.Observe(&outcome.Record{Priority: 3, Outcome: outcome.Forwarded, CostRule: "api.example.com", CostEstimate: 1000, CostActual: 400, CostReported: true})
	// As with limits.store: redis.
	if _, err := store.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

// newSpecServer returns an admin server wired as in production, with a
// token, ready.
func newSpecServer(t *testing.T) (*Server, *fakeBackend) {
	t.Helper()
	b := newSpecBackend()
	reg := newSpecRegistry(t, b.Stats)
	// As with limits.store: redis, which hosts[].shared_concurrency needs.
	st := func() (StoreStatus, bool) {
		return StoreStatus{Store: config.StoreRedis, Up: true, Replicas: 3, Since: time.Date(2026, 12, 4, 4, 30, 0, 0, time.UTC)}, true
	}
	s := New(Config{Token: specToken, AllowedHosts: []string{requestHost}}, Deps{Backend: b, Store: st, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	s.SetReady(true)
	return s, b
}

// serve sends one request to h in-process.
func serve(h http.Handler, method, path, token string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// ---- docs/openapi.yaml

type openAPIDoc struct {
	OpenAPI    string                          `yaml:"openapi"`
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Security   []map[string][]string           `yaml:"security"`
	Components struct {
		Schemas         map[string]*schema `yaml:"schemas"`
		SecuritySchemes map[string]struct {
			Type   string `yaml:"type"`
			Scheme string `yaml:"scheme"`
		} `yaml:"securitySchemes"`
	} `yaml:"components"`
}

type operation struct {
	Security    *[]map[string][]string `yaml:"security"`
	RequestBody *struct {
		Content map[string]mediaType `yaml:"content"`
	} `yaml:"requestBody"`
	Responses map[string]struct {
		Ref     string               `yaml:"$ref"`
		Content map[string]mediaType `yaml:"content"`
	} `yaml:"responses"`
}

type mediaType struct {
	Example  any `yaml:"example"`
	Examples map[string]struct {
		Value any `yaml:"value"`
	} `yaml:"examples"`
}

type schema struct {
	Ref        string             `yaml:"$ref"`
	Type       string             `yaml:"type"`
	Required   []string           `yaml:"required"`
	Properties map[string]*schema `yaml:"properties"`
}

// specOp is one documented path and method.
type specOp struct {
	path, method string // method upper-case
	op           operation
}

var httpMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}

func loadOpenAPI(t *testing.T) (*openAPIDoc, []specOp) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(docsDir, "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("docs/openapi.yaml: openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	var ops []specOp
	for _, path := range slices.Sorted(maps.Keys(doc.Paths)) {
		for _, m := range slices.Sorted(maps.Keys(doc.Paths[path])) {
			if !httpMethods[m] {
				continue
			}
			node := doc.Paths[path][m]
			var op operation
			if err := node.Decode(&op); err != nil {
				t.Fatalf("docs/openapi.yaml: %s %s: %v", m, path, err)
			}
			ops = append(ops, specOp{path: path, method: strings.ToUpper(m), op: op})
		}
	}
	if len(ops) == 0 {
		t.Fatal("docs/openapi.yaml: no operations")
	}
	return &doc, ops
}

// needsToken reports whether op requires the bearer token: its own
// security, else the document's.
func (o specOp) needsToken(doc *openAPIDoc) bool {
	sec := doc.Security
	if o.op.Security != nil {
		sec = *o.op.Security
	}
	return len(sec) > 0
}

// exampleBody returns the first JSON example of op's request body, nil
// when it has none.
func (o specOp) exampleBody(t *testing.T) []byte {
	t.Helper()
	if o.op.RequestBody == nil {
		return nil
	}
	mt, ok := o.op.RequestBody.Content["application/json"]
	if !ok {
		t.Fatalf("%s %s: request body without application/json", o.method, o.path)
	}
	v := mt.Example
	if v == nil && len(mt.Examples) > 0 {
		v = mt.Examples[slices.Sorted(maps.Keys(mt.Examples))[0]].Value
	}
	if v == nil {
		t.Fatalf("%s %s: request body without an example", o.method, o.path)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s %s: example: %v", o.method, o.path, err)
	}
	return b
}

// documents reports whether status is among op's documented responses.
func (o specOp) documents(status int) bool {
	_, ok := o.op.Responses[strconv.Itoa(status)]
	return ok
}

// TestOpenAPIRoutesServed: every documented path and method is served (not
// 404/405) with a documented status, using the documented request example;
// the token is needed exactly where the document says; and a path serves
// no method the document leaves out.
func TestOpenAPIRoutesServed(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	s, _ := newSpecServer(t)

	if sch, ok := doc.Components.SecuritySchemes["bearer"]; !ok || sch.Type != "http" || sch.Scheme != "bearer" {
		t.Errorf("securitySchemes.bearer = %+v, want type http, scheme bearer", sch)
	}
	documented := make(map[string][]string) // path -> methods
	for _, o := range ops {
		documented[o.path] = append(documented[o.path], o.method)
		t.Run(o.method+" "+o.path, func(t *testing.T) {
			w := serve(s, o.method, o.path, specToken, o.exampleBody(t))
			if w.Code == http.StatusNotFound || w.Code == http.StatusMethodNotAllowed {
				t.Fatalf("status %d: not served (body %q)", w.Code, w.Body.String())
			}
			if !o.documents(w.Code) {
				t.Errorf("status %d is not among the documented responses %v (body %q)", w.Code, slices.Sorted(maps.Keys(o.op.Responses)), w.Body.String())
			}
			if o.method == http.MethodGet {
				if h := serve(s, http.MethodHead, o.path, specToken, nil); h.Code != w.Code {
					t.Errorf("HEAD: status %d, GET %d (admin-api.md: HEAD is accepted wherever GET is)", h.Code, w.Code)
				}
			}
			// Without the token.
			w = serve(s, o.method, o.path, "", o.exampleBody(t))
			switch {
			case o.needsToken(doc) && w.Code != http.StatusUnauthorized:
				t.Errorf("without a token: status %d, want 401 (the document requires bearer)", w.Code)
			case o.needsToken(doc) && !o.documents(http.StatusUnauthorized):
				t.Errorf("401 is not documented")
			case !o.needsToken(doc) && w.Code == http.StatusUnauthorized:
				t.Errorf("without a token: 401, but the document says security: []")
			}
		})
	}
	// The other way: whatever a documented path serves is documented. A
	// method no documented path serves gets 405 with Allow.
	for path, methods := range documented {
		w := serve(s, "OPTIONS", path, specToken, nil)
		if w.Code != http.StatusMethodNotAllowed {
			t.Errorf("OPTIONS %s: status %d, want 405", path, w.Code)
			continue
		}
		for _, m := range strings.Split(w.Header().Get("Allow"), ",") {
			m = strings.TrimSpace(m)
			if m != "" && m != http.MethodHead && !slices.Contains(methods, m) {
				t.Errorf("%s %s is served (Allow: %s) but not in docs/openapi.yaml", m, path, w.Header().Get("Allow"))
			}
		}
	}
}

// resolve follows a local $ref (#/components/schemas/Name); what names
// the schema in messages.
func resolve(t *testing.T, doc *openAPIDoc, what string, s *schema) *schema {
	t.Helper()
	for s != nil && s.Ref != "" {
		name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/")
		if !ok || strings.Contains(name, "/") {
			t.Fatalf("%s: unsupported $ref %q", what, s.Ref)
		}
		s = doc.Components.Schemas[name]
	}
	if s == nil {
		t.Fatalf("docs/openapi.yaml: no schema for %s", what)
	}
	return s
}

func schemaNamed(t *testing.T, doc *openAPIDoc, name string) *schema {
	t.Helper()
	s, ok := doc.Components.Schemas[name]
	if !ok {
		t.Fatalf("docs/openapi.yaml: no components.schemas.%s", name)
	}
	return resolve(t, doc, name, s)
}

// sameKeys reports the difference between a schema's properties and a
// JSON object's keys.
func sameKeys(t *testing.T, what string, s *schema, obj map[string]any) {
	t.Helper()
	want := slices.Sorted(maps.Keys(s.Properties))
	got := slices.Sorted(maps.Keys(obj))
	for _, k := range got {
		if _, ok := s.Properties[k]; !ok {
			t.Errorf("%s: JSON field %q is sent but not in the schema", what, k)
		}
	}
	for _, k := range want {
		if _, ok := obj[k]; !ok {
			t.Errorf("%s: schema property %q is not in the JSON sent (%v)", what, k, got)
		}
	}
}

func decodeObject(t *testing.T, what string, w *httptest.ResponseRecorder, wantStatus int) map[string]any {
	t.Helper()
	if w.Code != wantStatus {
		t.Fatalf("%s: status %d, want %d: %s", what, w.Code, wantStatus, w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var obj map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &obj); err != nil {
		t.Fatalf("%s: %v: %s", what, err, w.Body.String())
	}
	return obj
}

// TestOpenAPISchemasMatchJSON: the schemas list exactly the fields sent.
func TestOpenAPISchemasMatchJSON(t *testing.T) {
	doc, ops := loadOpenAPI(t)
	s, _ := newSpecServer(t)

	limits := decodeObject(t, "GET /api/v1/limits", serve(s, "GET", "/api/v1/limits", specToken, nil), http.StatusOK)
	lim := schemaNamed(t, doc, "Limits")
	sameKeys(t, "Limits", lim, limits)
	// PUT needs every field of the GET form: the schema says so too.
	if got, want := slices.Sorted(slices.Values(lim.Required)), slices.Sorted(maps.Keys(lim.Properties)); !slices.Equal(got, want) {
		t.Errorf("Limits.required = %v, want every property %v (PUT needs them all)", got, want)
	}
	hosts, ok := limits["hosts"].([]any)
	if !ok || len(hosts) != 1 {
		t.Fatalf("hosts = %#v, want one rule", limits["hosts"])
	}
	sameKeys(t, "HostRule", schemaNamed(t, doc, "HostRule"), hosts[0].(map[string]any))
	sameKeys(t, "Cost", schemaNamed(t, doc, "Cost"), hosts[0].(map[string]any)["cost"].(map[string]any))
	if p := resolve(t, doc, "Limits.hosts", lim.Properties["hosts"]); p.Type != "array" {
		t.Errorf("Limits.hosts type %q, want array", p.Type)
	}

	// LimitsPatch accepts exactly the Limits fields.
	if patch, ok := doc.Components.Schemas["LimitsPatch"]; ok {
		if got, want := slices.Sorted(maps.Keys(patch.Properties)), slices.Sorted(maps.Keys(lim.Properties)); !slices.Equal(got, want) {
			t.Errorf("LimitsPatch properties %v, want those of Limits %v", got, want)
		}
	}

	queue := decodeObject(t, "GET /api/v1/queue", serve(s, "GET", "/api/v1/queue", specToken, nil), http.StatusOK)
	q := schemaNamed(t, doc, "Queue")
	sameKeys(t, "Queue", q, queue)
	byPrio, ok := queue["by_priority"].(map[string]any)
	if !ok {
		t.Fatalf("by_priority = %#v, want an object", queue["by_priority"])
	}
	if bp, ok := q.Properties["by_priority"]; ok {
		sameKeys(t, "Queue.by_priority", resolve(t, doc, "Queue.by_priority", bp), byPrio)
	}

	errSchema := schemaNamed(t, doc, "Error")
	for _, c := range []struct {
		what          string
		method, token string
		body          string
		status        int
	}{
		{"400", "PATCH", specToken, `{"rate":-5}`, http.StatusBadRequest},
		{"401", "GET", "wrong", "", http.StatusUnauthorized},
		{"413", "PATCH", specToken, `{"rate":1}` + strings.Repeat(" ", maxBody), http.StatusRequestEntityTooLarge},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		w := serve(s, c.method, "/api/v1/limits", c.token, body)
		sameKeys(t, "Error ("+c.what+")", errSchema, decodeObject(t, c.what, w, c.status))
	}

	// The documented examples of the JSON answers have the schema's fields.
	for _, o := range ops {
		for code, resp := range o.op.Responses {
			mt, ok := resp.Content["application/json"]
			if !ok || mt.Example == nil {
				continue
			}
			ex, ok := mt.Example.(map[string]any)
			if !ok {
				t.Errorf("%s %s %s: example is not an object", o.method, o.path, code)
				continue
			}
			switch o.path {
			case "/api/v1/limits":
				sameKeys(t, o.method+" "+o.path+" "+code+" example", lim, ex)
			case "/api/v1/queue":
				sameKeys(t, o.method+" "+o.path+" "+code+" example", q, ex)
			}
		}
	}
}

// TestAdminDocErrorExamples: the table of 400 answers in admin-api.md
// ("| request body (`PATCH`) | `error` |") shows what the server sends.
func TestAdminDocErrorExamples(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(docsDir, "admin-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "| request body (`PATCH`) |") })
	if start < 0 {
		t.Fatal("admin-api.md: no table of 400 answers")
	}
	code := regexp.MustCompile("`([^`]*)`")
	rows := 0
	for _, line := range lines[start+2:] {
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 2 {
			t.Fatalf("admin-api.md: row %q: want 2 cells", line)
		}
		var body []byte
		if m := code.FindStringSubmatch(cells[0]); m != nil {
			body = []byte(m[1])
		} else if !strings.Contains(cells[0], "empty") {
			t.Fatalf("admin-api.md: row %q: no request body", line)
		}
		method := http.MethodPatch
		if strings.Contains(cells[0], "`PUT`") {
			method = http.MethodPut
		}
		want := code.FindStringSubmatch(cells[1])
		if want == nil {
			t.Fatalf("admin-api.md: row %q: no error", line)
		}
		rows++
		s, _ := newSpecServer(t)
		w := serve(s, method, "/api/v1/limits", specToken, body)
		var got struct{ Error string }
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != http.StatusBadRequest {
			t.Errorf("%s %s: status %d, body %q; want 400", method, body, w.Code, w.Body.String())
			continue
		}
		if got.Error != want[1] {
			t.Errorf("%s %s:\n got error %q\n admin-api.md %q", method, body, got.Error, want[1])
		}
	}
	if rows == 0 {
		t.Error("admin-api.md: the table of 400 answers is empty")
	}
}

// ---- docs/metrics.md, alerts.yaml, grafana-dashboard.json

// docMetric is a row of the series table in metrics.md.
type docMetric struct {
	typ    string
	labels []string
}

var (
	// | `proxyd_requests_total` | counter | `priority`, `outcome` | … |
	metricRow = regexp.MustCompile("^\\|\\s*`((?:proxyd|go|process)_[a-z0-9_]*\\*?)`\\s*\\|\\s*([a-z]+)\\s*\\|([^|]*)\\|")
	labelName = regexp.MustCompile("`([a-z_][a-z0-9_]*)`")
	// A proxyd metric name in PromQL or prose; a name ending in "_" (a
	// prefix such as proxyd_limit_*) is not one.
	metricRef = regexp.MustCompile(`\bproxyd_[a-z0-9_]*[a-z0-9]\b`)
)

// loadMetricsDoc parses the series table of docs/metrics.md.
func loadMetricsDoc(t *testing.T) map[string]docMetric {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(docsDir, "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]docMetric)
	for _, line := range strings.Split(string(raw), "\n") {
		m := metricRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range labelName.FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, l[1])
		}
		slices.Sort(labels)
		if _, dup := out[m[1]]; dup {
			t.Errorf("metrics.md: %s documented twice", m[1])
		}
		out[m[1]] = docMetric{typ: m[2], labels: labels}
	}
	if len(out) == 0 {
		t.Fatal("metrics.md: no series table found")
	}
	return out
}

// documentedName maps a referenced series name to its family: histogram
// series (_bucket, _sum, _count) to the histogram.
func documentedName(doc map[string]docMetric, name string) (string, bool) {
	if _, ok := doc[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if d, ok := doc[base]; ok && d.typ == "histogram" {
				return base, true
			}
		}
	}
	return "", false
}

// collectStrings returns every string value under key (any depth) in v.
func collectStrings(v any, keys map[string]bool, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && keys[k] {
				*out = append(*out, s)
			} else {
				collectStrings(e, keys, out)
			}
		}
	case []any:
		for _, e := range v {
			collectStrings(e, keys, out)
		}
	}
}

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestDocsReferenceDocumentedMetrics: the alerts, the dashboard and the
// Markdown docs name only documented proxyd_ metrics.
func TestDocsReferenceDocumentedMetrics(t *testing.T) {
	doc := loadMetricsDoc(t)
	check := func(file, text string) int {
		t.Helper()
		n := 0
		for _, name := range metricRef.FindAllString(text, -1) {
			n++
			if _, ok := documentedName(doc, name); !ok {
				t.Errorf("%s: %s is not documented in metrics.md", file, name)
			}
		}
		return n
	}

	// alerts.yaml: a Prometheus rules file.
	raw, err := os.ReadFile(filepath.Join(docsDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("alerts.yaml: %s: no expr", r.Alert)
			}
			if r.Labels["severity"] == "" {
				t.Errorf("alerts.yaml: %s: no severity label", r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alerts.yaml: %s: needs summary and description annotations", r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alerts.yaml: %s: for: %v", r.Alert, err)
				}
			}
			check("alerts.yaml "+r.Alert, r.Expr)
		}
	}
	if alerts == 0 {
		t.Error("alerts.yaml: no alerting rules")
	}

	// grafana-dashboard.json: every query and variable definition.
	raw, err = os.ReadFile(filepath.Join(docsDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("grafana-dashboard.json: schemaVersion %v, want a current one (>= 36)", dash["schemaVersion"])
	}
	if !strings.Contains(string(raw), `"name": "DS_PROMETHEUS"`) || !strings.Contains(string(raw), `${DS_PROMETHEUS}`) {
		t.Error("grafana-dashboard.json: want a DS_PROMETHEUS input used as ${DS_PROMETHEUS}")
	}
	var queries []string
	collectStrings(dash, map[string]bool{"expr": true, "definition": true, "query": true}, &queries)
	if n := check("grafana-dashboard.json", strings.Join(queries, "\n")); n == 0 {
		t.Error("grafana-dashboard.json: no proxyd_ metric in any query")
	}

	// The prose and PromQL of the Markdown docs.
	for _, f := range []string{"metrics.md", "admin-api.md"} {
		raw, err := os.ReadFile(filepath.Join(docsDir, f))
		if err != nil {
			t.Fatal(err)
		}
		check(f, string(raw))
	}
}

// TestRegistryDocumented: every family the registry exposes (as
// cmd/proxyd builds it) is in metrics.md with its type and labels, and
// every proxyd_ family documented there is exposed.
func TestRegistryDocumented(t *testing.T) {
	doc := loadMetricsDoc(t)
	// statsBackend: a provider cap too, so that every family is exposed.
	b := statsBackend{newSpecBackend()}
	mfs, err := newSpecRegistry(t, b.Stats).Gather()
	if err != nil {
		t.Fatal(err)
	}
	exposed := make(map[string]bool)
	for _, mf := range mfs {
		name := mf.GetName()
		exposed[name] = true
		d, ok := doc[name]
		if !ok {
			prefix, _, _ := strings.Cut(name, "_")
			if _, ok := doc[prefix+"_*"]; ok && prefix != "proxyd" {
				continue // go_*, process_*: documented as a collector
			}
			t.Errorf("%s is exposed but not documented in metrics.md", name)
			continue
		}
		if want := strings.ToLower(mf.GetType().String()); d.typ != want {
			t.Errorf("metrics.md: %s is a %s, documented as %s", name, want, d.typ)
		}
		labels := make(map[string]bool)
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		if got := slices.Sorted(maps.Keys(labels)); !slices.Equal(got, d.labels) {
			t.Errorf("metrics.md: %s has labels %v, documented %v", name, got, d.labels)
		}
	}
	for name := range doc {
		if strings.HasPrefix(name, "proxyd_") && !exposed[name] {
			t.Errorf("metrics.md documents %s, which the registry does not expose", name)
		}
	}
}

// bucketLine is "- `proxyd_x_seconds` buckets (seconds): 0.001, …, `+Inf`."
// (or "(a ratio)") in metrics.md, possibly wrapped over several lines.
var bucketLine = regexp.MustCompile("(?s)- `(proxyd_[a-z0-9_]+)` buckets \\((?:seconds|a ratio)\\): ([^`]*)`\\+Inf`")

// TestMetricsDocBuckets: metrics.md lists every histogram's buckets
// exactly as the registry exposes them (the le label values).
func TestMetricsDocBuckets(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(docsDir, "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := make(map[string][]string)
	for _, m := range bucketLine.FindAllStringSubmatch(string(raw), -1) {
		var les []string
		for _, f := range strings.Split(m[2], ",") {
			if f = strings.TrimSpace(f); f != "" {
				les = append(les, f)
			}
		}
		documented[m[1]] = les
	}
	mfs, err := newSpecRegistry(t, newSpecBackend().Stats).Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "proxyd_") || len(mf.GetMetric()) == 0 || mf.GetMetric()[0].GetHistogram() == nil {
			continue
		}
		n++
		var got []string
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			got = append(got, strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64))
		}
		want, ok := documented[mf.GetName()]
		if !ok {
			t.Errorf("metrics.md: no \"- `%s` buckets (seconds): …\" line", mf.GetName())
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("metrics.md: %s buckets\n documented %v\n exposed    %v", mf.GetName(), want, got)
		}
		delete(documented, mf.GetName())
	}
	if n == 0 {
		t.Error("the registry exposes no proxyd_ histogram")
	}
	for name := range documented {
		t.Errorf("metrics.md lists buckets of %s, which is not an exposed histogram", name)
	}
}

// TestAdminDocAuthScheme: admin-api.md states what requireToken does: the
// scheme is case-insensitive (RFC 9110 §11.1), the token exact.
func TestAdminDocAuthScheme(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(docsDir, "admin-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(raw), "## Authentication")
	section, _, _ = strings.Cut(section, "\n## ")
	section = strings.Join(strings.Fields(section), " ")
	for _, want := range []string{"scheme is case-insensitive", "RFC 9110 §11.1", "token itself is compared exactly"} {
		if !strings.Contains(section, want) {
			t.Errorf("admin-api.md, Authentication: does not say %q", want)
		}
	}
	s, _ := newSpecServer(t)
	for hdr, want := range map[string]int{"Bearer " + specToken: 200, "bearer " + specToken: 200, "BEARER " + specToken: 200, "Bearer " + strings.ToUpper(specToken): 401} {
		r := httptest.NewRequest("GET", "/api/v1/limits", nil)
		r.Header.Set("Authorization", hdr)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Authorization %q: %d, want %d", hdr, w.Code, want)
		}
	}
}
