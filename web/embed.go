package web

import (
	"embed"
	"net/http"
	"path"
)

//go:embed index.html app.js style.css crease-client.js crease-backoff.js crease-merge-patch.js crease-stream.js crease-token.js crease-urls.js
var files embed.FS

// Content types are fixed here rather than taken from the OS mime table, which differs
// between machines and may not know .js as a JavaScript module type.
var contentTypes = map[string]string{
	"index.html":       "text/html; charset=utf-8",
	"app.js":           "text/javascript; charset=utf-8",
	"crease-client.js": "text/javascript; charset=utf-8",
	// The modules crease-client.js imports.
	"crease-backoff.js":     "text/javascript; charset=utf-8",
	"crease-merge-patch.js": "text/javascript; charset=utf-8",
	"crease-stream.js":      "text/javascript; charset=utf-8",
	"crease-token.js":       "text/javascript; charset=utf-8",
	"crease-urls.js":        "text/javascript; charset=utf-8",
	"style.css":             "text/css; charset=utf-8",
}

// Handler serves the page: / is index.html; app.js, style.css, crease-client.js and the
// modules it imports by name. Everything else is 404. Responses carry Cache-Control: no-cache so a redeployed
// gateway's page is picked up (revalidation is cheap: the files are a few KB).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := path.Clean("/" + r.URL.Path)[1:]
		if name == "" || name == "index.html" {
			name = "index.html"
		}
		ct, ok := contentTypes[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		body, err := files.ReadFile(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", ct)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		_, _ = w.Write(body)
	})
}
