// Package web holds the browser client module duplex.js (with its types,
// duplex.d.ts, and its SharedWorker, duplex-worker.js) and the live demo
// page, embedded in the binary and served at / and beside it.
package web

import (
	"embed"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Content types by file name ending.
const (
	ctypeHTML = "text/html; charset=utf-8"
	ctypeJS   = "text/javascript; charset=utf-8"
	ctypeTS   = "application/typescript; charset=utf-8"
	ctypeCSS  = "text/css; charset=utf-8"
)

// Serves reports whether Handler serves path, so the server hands it only
// those (and answers JSON 404s itself everywhere else).
func Serves(path string) bool {
	_, _, ok := file(path)
	return ok || path == "/favicon.ico"
}

// file maps a URL path to its embedded file and content type. One case a
// file, so that adding a page's file is one line.
func file(path string) (name, ctype string, ok bool) {
	switch path {
	case "/":
		return "static/index.html", ctypeHTML, true
	case "/duplex.js":
		return "static/duplex.js", ctypeJS, true
	case "/duplex.d.ts":
		return "static/duplex.d.ts", ctypeTS, true
	case "/duplex-worker.js":
		return "static/duplex-worker.js", ctypeJS, true
	case "/demo.js":
		return "static/demo.js", ctypeJS, true
	case "/demo.css":
		return "static/demo.css", ctypeCSS, true
	}
	return "", "", false
}

// Handler serves the embedded files: / is the demo page (its script and
// style at /demo.js and /demo.css), /duplex.js the client module, /duplex.d.ts its types, /duplex-worker.js its
// SharedWorker. Anything else is a JSON 404 like the hub's.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			w.WriteHeader(http.StatusNoContent) // no icon, and no 404 in the console
			return
		}
		name, ctype, ok := file(r.URL.Path)
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"code":"not_found","message":"no such file: ` + strings.ReplaceAll(jsonSafe(r.URL.Path), `"`, `'`) + `"}}` + "\n"))
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

// jsonSafe keeps only printable ASCII other than backslash, so a path can
// sit inside a JSON string as it is.
func jsonSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '\\' {
			return '?'
		}
		return r
	}, s)
}
