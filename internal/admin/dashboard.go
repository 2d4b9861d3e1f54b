package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// dashboardFS holds the dashboard page (docs/admin-api.md, "GET /dashboard"): HTML, CSS and
// hand-written JavaScript (the charts are plain canvas). Nothing is
// fetched from anywhere else; the Content-Security-Policy below makes the
// browser hold the page to that.
//
//go:embed dashboard
var dashboardFS embed.FS

// dashboardCSP allows the page's own scripts, styles and API only.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var dashboardTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
}

// dashboard serves GET /dashboard (the page) and GET /dashboard/{asset}.
// It is open: the page holds no data; what it fetches under /api/ follows
// the token rule (docs/admin-api.md, "Authentication").
func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("asset")
	if name == "" {
		name = "index.html"
	}
	typ, ok := dashboardTypes[path.Ext(name)]
	if !ok || name != path.Base(name) {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(dashboardFS, "dashboard/"+name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", typ)
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}
