package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	cases := []struct {
		path, ctype, contains string
		code                  int
	}{
		{"/", "text/html; charset=utf-8", `id="score"`, 200},
		{"/?match=1298150", "text/html; charset=utf-8", `src="app.js"`, 200},
		{"/index.html", "text/html; charset=utf-8", `id="status"`, 200},
		{"/app.js", "text/javascript; charset=utf-8", "crease-client.js", 200},
		{"/crease-client.js", "text/javascript; charset=utf-8", "export function connect", 200},
		{"/crease-merge-patch.js", "text/javascript; charset=utf-8", "export function mergePatch", 200},
		{"/crease-stream.js", "text/javascript; charset=utf-8", "export class MatchStream", 200},
		{"/crease-backoff.js", "text/javascript; charset=utf-8", "export function reconnectDelay", 200},
		{"/crease-token.js", "text/javascript; charset=utf-8", "export function tokenExpiryMs", 200},
		{"/crease-urls.js", "text/javascript; charset=utf-8", "export function httpBaseFromWsURL", 200},
		{"/style.css", "text/css; charset=utf-8", "@media", 200},
		{"/embed.go", "", "", 404},
		{"/fakes.mjs", "", "", 404},
		{"/../go.mod", "", "", 404},
	}
	for _, c := range cases {
		res, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.code {
			t.Errorf("%s: status %d, want %d", c.path, res.StatusCode, c.code)
			continue
		}
		if c.code != 200 {
			continue
		}
		if got := res.Header.Get("Content-Type"); got != c.ctype {
			t.Errorf("%s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("%s: Cache-Control %q", c.path, got)
		}
		if !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: body lacks %q", c.path, c.contains)
		}
	}
	res, err := http.Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d", res.StatusCode)
	}
}

// Every module the page's scripts import is served: a split of the client that forgot
// the embed list would break the page in the browser only.
func TestHandlerServesEveryImportedModule(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	imports := regexp.MustCompile(`(?m)^\s*(?:import|export)\s[^;]*?from\s+"\./([^"]+)"`)
	seen := map[string]bool{}
	queue := []string{"app.js"}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		res, err := http.Get(srv.URL + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("/%s: status %d; it is imported, so it must be embedded", name, res.StatusCode)
			continue
		}
		for _, m := range imports.FindAllStringSubmatch(string(body), -1) {
			queue = append(queue, m[1])
		}
	}
	if !seen["crease-stream.js"] || !seen["crease-client.js"] {
		t.Fatalf("modules reached from app.js: %v", seen)
	}
}
