// Package web holds the browser client module duplex.js and the live demo
// page, embedded in the binary and served at /duplex.js and / (with the
// page's own /demo.js and /demo.css).
package web

import (
	"embed"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the embedded files: / is the demo page (its script and
// style at /demo.js and /demo.css), /duplex.js the client module.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "static/index.html"
		ctype := "text/html; charset=utf-8"
		switch r.URL.Path {
		case "/duplex.js":
			name, ctype = "static/duplex.js", "text/javascript; charset=utf-8"
		case "/demo.js":
			name, ctype = "static/demo.js", "text/javascript; charset=utf-8"
		case "/demo.css":
			name, ctype = "static/demo.css", "text/css; charset=utf-8"
		case "/":
		default:
			http.NotFound(w, r)
			return
		}
		b, err := static.ReadFile(name)
		if err != nil {
			http.Error(w, "missing embedded file", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(b)
	})
}
