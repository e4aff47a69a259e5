package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"crease/bus"
	"crease/ingest"
	"crease/server"
	"crease/server/servertest"
	"crease/web"
)

// The HTTP listener under version 2: tokens on the API, CORS,
// conditional requests and gzip.

// plainClient never asks for or undoes compression by itself, so that tests see the
// bytes on the wire.
var plainClient = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second}

type httpAnswer struct {
	status int
	header http.Header
	body   []byte
}

// get sends a request with the header lines given as "Name: value" and reads the answer.
func get(t testing.TB, method, url string, header ...string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range header {
		if h == "" {
			continue
		}
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return httpAnswer{resp.StatusCode, resp.Header, body}
}

func matchIDs(t testing.TB, body []byte) []string {
	t.Helper()
	var list []bus.MatchInfo
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("match list %q: %v", body, err)
	}
	var ids []string
	for _, m := range list {
		ids = append(ids, m.Match)
	}
	return ids
}

// Under --jwt-secret the API needs the token, as Authorization: Bearer or ?token= (the
// page has it in its URL); the list holds only the claimed matches and a snapshot
// outside the claim is 403, even for a match that does not exist.
func TestHTTPAPINeedsTheToken(t *testing.T) {
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, JWTSecret: authSecret, Page: web.Handler()})
	p := newPublisher(t, b)
	for _, m := range []string{"m1", "m2", "m3"} {
		p.delta(m, "normal")
	}
	base := servertest.HTTPURL(s)
	hour := time.Now().Add(time.Hour).Unix()
	narrow := authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": hour, "matches": []string{"m1", "m3", "m9"}})
	open := authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": hour})
	expired := authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()})

	for _, tc := range []struct {
		name, path, header, challenge string
	}{
		{"list without a token", "/v1/matches", "", `Bearer realm="crease"`},
		{"snapshot without a token", "/v1/matches/m1", "", `Bearer realm="crease"`},
		{"expired in the header", "/v1/matches/m1", "Authorization: Bearer " + expired, `Bearer realm="crease", error="invalid_token", error_description="token is expired"`},
		{"expired in the query", "/v1/matches?token=" + expired, "", `Bearer realm="crease", error="invalid_token"`},
		{"another scheme only", "/v1/matches", "Authorization: Basic dXNlcjpwYXNz", `Bearer realm="crease"`},
		{"garbage", "/v1/matches/m1", "Authorization: Bearer not.a.jwt", `Bearer realm="crease", error="invalid_token"`},
	} {
		a := get(t, "GET", base+tc.path, tc.header)
		if a.status != 401 || !strings.HasPrefix(a.header.Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("%s: %d WWW-Authenticate %q, want 401 and %q", tc.name, a.status, a.header.Get("WWW-Authenticate"), tc.challenge)
		}
	}

	for _, tc := range []struct {
		name, path, header string
		want               []string
	}{
		{"Bearer header", "/v1/matches", "Authorization: Bearer " + narrow, []string{"m1", "m3"}},
		{"bearer in any case", "/v1/matches", "Authorization: bearer  " + narrow, []string{"m1", "m3"}},
		{"?token", "/v1/matches?token=" + narrow, "", []string{"m1", "m3"}},
		{"?token beside a proxy's Basic", "/v1/matches?token=" + narrow, "Authorization: Basic dXNlcjpwYXNz", []string{"m1", "m3"}},
		{"no matches claim", "/v1/matches", "Authorization: Bearer " + open, []string{"m1", "m2", "m3"}},
	} {
		a := get(t, "GET", base+tc.path, tc.header)
		if a.status != 200 || !slices.Equal(matchIDs(t, a.body), tc.want) || a.header.Get("Cache-Control") != "private, no-cache" {
			t.Errorf("%s: %d %s (Cache-Control %q), want %v", tc.name, a.status, a.body, a.header.Get("Cache-Control"), tc.want)
		}
	}

	for path, want := range map[string]int{
		"/v1/matches/m1?token=" + narrow: 200,
		"/v1/matches/m2?token=" + narrow: 403, // exists, outside the claim
		"/v1/matches/m4?token=" + narrow: 403, // does not exist, outside the claim: no hint
		"/v1/matches/m9?token=" + narrow: 404, // claimed, not started
		"/v1/matches/m2?token=" + open:   200,
	} {
		if a := get(t, "GET", base+path); a.status != want {
			t.Errorf("%s: %d %s, want %d", path[:strings.Index(path, "?")], a.status, a.body, want)
		}
	}
	if a := get(t, "GET", base+"/v1/matches/m1", "Authorization: Bearer "+narrow); a.status != 200 || !bytes.Contains(a.body, []byte(`"match":"m1"`)) {
		t.Errorf("snapshot with the header: %d %s", a.status, a.body)
	}
	// What the page needs to start stays open: the page, its script, its config, and
	// the operators' paths.
	for _, path := range []string{"/", "/crease-client.js", "/app.js", "/config.json", "/healthz", "/readyz", "/metrics"} {
		if a := get(t, "GET", base+path); a.status != 200 {
			t.Errorf("%s without a token: %d, want 200", path, a.status)
		}
	}
}

// CORS follows --allowed-origins on the whole HTTP listener, preflight included.
func TestCORS(t *testing.T) {
	b := bus.NewEmbedded()
	anyOrigin := servertest.Run(t, server.Options{Bus: b, Page: web.Handler()})
	listed := servertest.Run(t, server.Options{Bus: b, Page: web.Handler(), AllowedOrigins: []string{"https://good.example"}})
	newPublisher(t, b).delta("m1", "normal")

	for _, path := range []string{"/v1/matches/m1", "/v1/matches", "/crease-client.js"} {
		a := get(t, "GET", servertest.HTTPURL(anyOrigin)+path, "Origin: https://fans.example")
		if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(a.header.Get("Access-Control-Expose-Headers"), "ETag") {
			t.Errorf("any origin, %s: %d ACAO %q expose %q", path, a.status, a.header.Get("Access-Control-Allow-Origin"), a.header.Get("Access-Control-Expose-Headers"))
		}
		a = get(t, "GET", servertest.HTTPURL(listed)+path, "Origin: https://good.example")
		if a.status != 200 || a.header.Get("Access-Control-Allow-Origin") != "https://good.example" || !slices.Contains(a.header.Values("Vary"), "Origin") {
			t.Errorf("listed origin, %s: %d ACAO %q Vary %q", path, a.status, a.header.Get("Access-Control-Allow-Origin"), a.header.Values("Vary"))
		}
		a = get(t, "GET", servertest.HTTPURL(listed)+path, "Origin: https://evil.example")
		if a.header.Get("Access-Control-Allow-Origin") != "" || !slices.Contains(a.header.Values("Vary"), "Origin") {
			t.Errorf("foreign origin, %s: ACAO %q: its page must not read the answer", path, a.header.Get("Access-Control-Allow-Origin"))
		}
	}

	preflight := []string{"Origin: https://good.example", "Access-Control-Request-Method: GET", "Access-Control-Request-Headers: authorization, if-none-match"}
	a := get(t, "OPTIONS", servertest.HTTPURL(listed)+"/v1/matches/m1", preflight...)
	if a.status != 204 || a.header.Get("Access-Control-Allow-Origin") != "https://good.example" ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Methods"), "GET") ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Headers"), "If-None-Match") || a.header.Get("Access-Control-Max-Age") == "" {
		t.Errorf("preflight: %d %v", a.status, a.header)
	}
	if a := get(t, "OPTIONS", servertest.HTTPURL(anyOrigin)+"/crease-client.js", preflight...); a.status != 204 || a.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight, any origin: %d %v", a.status, a.header)
	}
	if a := get(t, "OPTIONS", servertest.HTTPURL(listed)+"/v1/matches", "Origin: https://evil.example", "Access-Control-Request-Method: GET"); a.status != 403 || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from a foreign origin: %d %v, want 403 without ACAO", a.status, a.header)
	}
	if a := get(t, "OPTIONS", servertest.HTTPURL(anyOrigin)+"/v1/matches"); a.status != 204 || a.header.Get("Allow") == "" {
		t.Errorf("plain OPTIONS: %d %v", a.status, a.header)
	}
}

// If-None-Match by RFC 9110 (a list, weak comparison, "*"), and gzip when asked: a real
// match's snapshot and the browser client are sent compressed and decode to exactly
// the identity bytes.
func TestSnapshotConditionalAndGzip(t *testing.T) {
	matches, err := ingest.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, Page: web.Handler()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ingest.Replay(ctx, b, matches[0], ingest.ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	url := servertest.HTTPURL(s) + "/v1/matches/" + matches[0].ID()
	plain := get(t, "GET", url)
	etag := plain.header.Get("ETag")
	if plain.status != 200 || plain.header.Get("Content-Encoding") != "" || !strings.HasPrefix(etag, `"`) {
		t.Fatalf("identity: %d %v", plain.status, plain.header)
	}
	for inm, want := range map[string]int{
		"*": 304, etag: 304, "W/" + etag: 304, `"x.1", ` + etag: 304, `"x.1"`: 200, `"x.1",,` + etag + `,`: 304,
	} {
		if a := get(t, "GET", url, "If-None-Match: "+inm); a.status != want {
			t.Errorf("If-None-Match %s: %d, want %d", inm, a.status, want)
		} else if want == 304 && (a.header.Get("ETag") != etag || len(a.body) != 0) {
			t.Errorf("If-None-Match %s: 304 with ETag %q and %d body bytes", inm, a.header.Get("ETag"), len(a.body))
		}
	}
	if a := get(t, "GET", servertest.HTTPURL(s)+"/v1/matches/nope", "If-None-Match: *"); a.status != 404 {
		t.Errorf("If-None-Match * on an unknown match: %d, want 404 (no current representation)", a.status)
	}

	for _, target := range []struct{ name, url string }{{"snapshot", url}, {"client script", servertest.HTTPURL(s) + "/crease-client.js"}} {
		identity := get(t, "GET", target.url, "Accept-Encoding: identity")
		for _, ae := range []string{"gzip", "br;q=1.0, gzip;q=0.8", "*", "GZIP, deflate"} {
			a := get(t, "GET", target.url, "Accept-Encoding: "+ae)
			if a.status != 200 || a.header.Get("Content-Encoding") != "gzip" || !slices.Contains(a.header.Values("Vary"), "Accept-Encoding") {
				t.Fatalf("%s, Accept-Encoding %q: %d %v", target.name, ae, a.status, a.header)
			}
			zr, err := gzip.NewReader(bytes.NewReader(a.body))
			if err != nil {
				t.Fatal(err)
			}
			unzipped, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(unzipped, identity.body) {
				t.Fatalf("%s: gzip body does not decode to the identity body (%v)", target.name, err)
			}
			if len(a.body) >= len(identity.body) {
				t.Fatalf("%s: gzip %d bytes, identity %d", target.name, len(a.body), len(identity.body))
			}
		}
		for _, ae := range []string{"gzip;q=0", "deflate", "*;q=0", "gzip;q=0, *", "identity"} {
			if a := get(t, "GET", target.url, "Accept-Encoding: "+ae); a.header.Get("Content-Encoding") != "" || !bytes.Equal(a.body, identity.body) {
				t.Errorf("%s, Accept-Encoding %q: encoded %q", target.name, ae, a.header.Get("Content-Encoding"))
			}
		}
	}
}

// behindStore is an embedded bus whose store says it is behind what was delivered, as
// the Redis bus does after a failover to a lagging replica.
type behindStore struct{ *bus.Embedded }

func (behindStore) Snapshot(context.Context, string) (bus.Snapshot, error) {
	return bus.Snapshot{}, errors.New("the store is behind m1:7, already delivered")
}

// TestSnapshotStoreBehindIs503WithRetryAfter: PROTOCOL.md's "503 with Retry-After while
// the store is behind what this gateway delivered".
func TestSnapshotStoreBehindIs503WithRetryAfter(t *testing.T) {
	t.Parallel()
	s := servertest.Run(t, server.Options{Bus: behindStore{bus.NewEmbedded()}, Loops: 1})
	a := get(t, http.MethodGet, servertest.HTTPURL(s)+"/v1/matches/m1")
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); a.status != http.StatusServiceUnavailable || err != nil || ra < 1 {
		t.Fatalf("HTTP %d, Retry-After %q, want 503 with a Retry-After in seconds", a.status, a.header.Get("Retry-After"))
	}
}

// A client that sends a body slowly, or keeps a connection idle, does not hold a
// descriptor past the HTTP listener's timeouts.
func TestHTTPSlowBodyAndIdleConnectionsAreCut(t *testing.T) {
	t.Parallel()
	const within = 300 * time.Millisecond
	s := servertest.Run(t, server.Options{Bus: bus.NewEmbedded(), HTTPReadTimeout: within, HTTPIdleTimeout: within})
	addr := strings.TrimPrefix(servertest.HTTPURL(s), "http://")
	// Each request is sent once; the gateway must close the connection by itself.
	for what, req := range map[string]string{
		"idle keep-alive": "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"slow body":       "PUT /v1/matches/m1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("%s: the gateway kept the connection open: %v", what, err)
		}
	}
}

// The start line says the descriptor limit beside the connection cap, and warns when the
// cap is past what the limit leaves: accepts would fail with EMFILE before it.
func TestStartWarnsOfACapOverTheDescriptorLimit(t *testing.T) {
	var logs servertest.LockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	servertest.Run(t, server.Options{Bus: bus.NewEmbedded(), Logger: log, MaxConns: 1 << 30})
	out := logs.String()
	if !strings.Contains(out, "fd_limit=") || !strings.Contains(out, "max connections above what the descriptor limit leaves") {
		t.Fatalf("start logs without the descriptor limit or its warning:\n%s", out)
	}
}
