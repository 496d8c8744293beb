package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/duplexhq/duplex/internal/hubtest"
)

// TestServedFiles: a hub serves the page, the module, its types and its
// worker with their content types, answers the favicon with no content,
// and an unknown top-level file with a JSON 404.
func TestServedFiles(t *testing.T) {
	h := hubtest.Start(t, nil)
	cases := []struct {
		path, ctype, contains string
		status                int
	}{
		{"/", "text/html; charset=utf-8", "<html", 200},
		{"/duplex.js", "text/javascript; charset=utf-8", "export function connect", 200},
		{"/duplex.d.ts", "application/typescript; charset=utf-8", "export function connect", 200},
		{"/duplex-worker.js", "text/javascript; charset=utf-8", "onconnect", 200},
		{"/favicon.ico", "", "", 204},
		{"/nope.js", "application/json", `"not_found"`, 404},
		{"/v1/nope", "application/json", `"not_found"`, 404},
	}
	for _, c := range cases {
		res, err := http.Get(h.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) || !strings.Contains(string(b), c.contains) {
			t.Errorf("GET %s: %d %q %.80q; want %d %q containing %q", c.path, res.StatusCode, res.Header.Get("Content-Type"), b, c.status, c.ctype, c.contains)
		}
		if c.status == 404 && !json.Valid(b) {
			t.Errorf("GET %s: 404 body %q is not JSON", c.path, b)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(hubtest.Main(m)) }
