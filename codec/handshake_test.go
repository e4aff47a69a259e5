package codec_test

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"crease/bus"
	"crease/codec"
)

const testKey = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 1.3's example

// handshake builds a valid client handshake for uri; extra lines ("K: v") are added and
// a line "-Name" removes header Name.
func handshake(uri string, extra ...string) string {
	hdr := [][2]string{
		{"Host", "example.com"},
		{"Upgrade", "websocket"},
		{"Connection", "Upgrade"},
		{"Sec-WebSocket-Key", testKey},
		{"Sec-WebSocket-Version", "13"},
	}
	for _, e := range extra {
		if name, ok := strings.CutPrefix(e, "-"); ok {
			hdr = slices.DeleteFunc(hdr, func(h [2]string) bool { return h[0] == name })
			continue
		}
		k, v, _ := strings.Cut(e, ": ")
		replaced := false
		for i := range hdr {
			if hdr[i][0] == k {
				hdr[i][1], replaced = v, true
			}
		}
		if !replaced {
			hdr = append(hdr, [2]string{k, v})
		}
	}
	var b strings.Builder
	b.WriteString("GET " + uri + " HTTP/1.1\r\n")
	for _, h := range hdr {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// expectedAccept computes Sec-WebSocket-Accept from RFC 6455 4.2.2, independently of
// gobwas.
func expectedAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func parseResponse(t testing.TB, resp []byte) (*http.Response, string) {
	t.Helper()
	r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp)), nil)
	if err != nil {
		t.Fatalf("response does not parse: %v\n%q", err, resp)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("response body: %v\n%q", err, resp)
	}
	return r, string(body)
}

func TestUpgradeHappyPath(t *testing.T) {
	u := &codec.Upgrader{}
	hs := handshake("/ws?match=m123,m456&token=abc", "Origin: https://scores.example")
	frames := []byte{0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1}
	in := append([]byte(hs), frames...)
	prefix := []byte("kept")
	n, resp, req, err := u.Upgrade(in, prefix)
	if err != nil {
		t.Fatalf("Upgrade: %v\n%s", err, resp)
	}
	if n != len(hs) {
		t.Fatalf("n = %d, want %d (the header block only)", n, len(hs))
	}
	if !bytes.Equal(in[n:], frames) {
		t.Fatalf("bytes after the header block changed: %x", in[n:])
	}
	if !bytes.HasPrefix(resp, prefix) {
		t.Fatalf("resp does not extend out: %q", resp)
	}
	r, _ := parseResponse(t, resp[len(prefix):])
	if r.StatusCode != 101 {
		t.Fatalf("status %d", r.StatusCode)
	}
	if got := r.Header.Get("Sec-WebSocket-Accept"); got != expectedAccept(testKey) || got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept = %q", got)
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
		t.Fatalf("headers %v", r.Header)
	}
	if r.Header.Get("Sec-WebSocket-Protocol") != "" {
		t.Fatalf("a protocol was selected unasked: %v", r.Header)
	}
	want := codec.Request{Path: "/ws", Matches: []string{"m123", "m456"}, Token: "abc", Origin: "https://scores.example", Host: "example.com"}
	if !equalRequest(req, want) {
		t.Fatalf("req = %+v, want %+v", req, want)
	}
}

func equalRequest(a, b codec.Request) bool {
	return a.Path == b.Path && slices.Equal(a.Matches, b.Matches) && a.Token == b.Token &&
		a.Origin == b.Origin && a.Host == b.Host && slices.Equal(a.Protocols, b.Protocols) && a.Selected == b.Selected
}

// Connection and Upgrade are RFC 9110 lists: any case, several elements, several lines,
// empty elements. Each of these upgrades, and gobwas still writes the 101 itself.
func TestUpgradeHeaderLists(t *testing.T) {
	base := "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: " + testKey + "\r\nSec-WebSocket-Version: 13\r\n"
	for _, tc := range []struct{ name, lines string }{
		{"connection on two lines", "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n"},
		{"connection list", "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"},
		{"lower case", "upgrade: WebSocket\r\nconnection: upgrade\r\n"},
		{"upgrade list", "Upgrade: websocket, h2c\r\nConnection: Upgrade\r\n"},
		{"upgrade list, websocket last", "Upgrade: h2c,websocket\r\nConnection: Upgrade, HTTP2-Settings\r\n"},
		{"upgrade on two lines", "Upgrade: h2c\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"},
		{"empty elements and tabs", "Upgrade: ,\twebsocket ,\r\nConnection: ,, Upgrade\t,\r\n"},
		{"protocol version", "Upgrade: websocket/13\r\nConnection: Upgrade\r\n"},
		{"fields after the key", "X-A: 1\r\nConnection: keep-alive\r\nX-B: 2\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base + tc.lines + "Origin: https://o.example\r\n\r\n"
			u := &codec.Upgrader{}
			n, resp, req, err := u.Upgrade([]byte(in+"\x81"), nil)
			if err != nil {
				t.Fatalf("Upgrade: %v\n%s", err, resp)
			}
			if n != len(in) {
				t.Fatalf("n = %d, want %d (the original header block)", n, len(in))
			}
			r, _ := parseResponse(t, resp)
			if r.StatusCode != 101 || r.Header.Get("Sec-WebSocket-Accept") != expectedAccept(testKey) {
				t.Fatalf("answer %q", resp)
			}
			if req.Origin != "https://o.example" || req.Host != "h" {
				t.Fatalf("other fields lost in the rewrite: %+v", req)
			}
		})
	}
}

func TestUpgradeMatches(t *testing.T) {
	long := strings.Repeat("a", 64)
	for _, tc := range []struct {
		query  string
		want   []string
		status int // 0: upgraded
	}{
		{"", nil, 0},
		{"?match=", nil, 0},
		{"?match=m1", []string{"m1"}, 0},
		{"?match=m1,m2", []string{"m1", "m2"}, 0},
		{"?match=m1&match=m2,m1", []string{"m1", "m2"}, 0},
		{"?match=A-z_09," + long, []string{"A-z_09", long}, 0},
		{"?match=m1%2Cm2", []string{"m1", "m2"}, 0}, // an escaped comma is still a comma once decoded
		{"?match=" + long + "a", nil, 400},
		{"?match=bad!", nil, 400},
		{"?match=a,,b", nil, 400},
		{"?match=a,", nil, 400},
		{"?match=a%20b", nil, 400},
		{"?match=%zz", nil, 400},
		{"?match=a;b", nil, 400},
	} {
		u := &codec.Upgrader{ValidMatch: bus.ValidMatchID}
		_, resp, req, err := u.Upgrade([]byte(handshake("/ws"+tc.query)), nil)
		if tc.status == 0 {
			if err != nil || !slices.Equal(req.Matches, tc.want) {
				t.Errorf("%q: err %v, matches %q, want %q", tc.query, err, req.Matches, tc.want)
			}
			continue
		}
		var he *codec.HTTPError
		if !errors.As(err, &he) || he.Status != tc.status {
			t.Errorf("%q: err %v, want status %d", tc.query, err, tc.status)
			continue
		}
		if r, _ := parseResponse(t, resp); r.StatusCode != tc.status {
			t.Errorf("%q: response status %d", tc.query, r.StatusCode)
		}
	}
}

// What a match id is, is the application's: without ValidMatch any non-empty id of the
// list passes, and an empty one never does.
func TestUpgradeMatchesWithoutValidator(t *testing.T) {
	u := &codec.Upgrader{}
	_, _, req, err := u.Upgrade([]byte(handshake("/ws?match=bad!,a%20b")), nil)
	if err != nil || !slices.Equal(req.Matches, []string{"bad!", "a b"}) {
		t.Fatalf("err %v, matches %q", err, req.Matches)
	}
	var he *codec.HTTPError
	if _, _, _, err := u.Upgrade([]byte(handshake("/ws?match=a,,b")), nil); !errors.As(err, &he) || he.Status != 400 {
		t.Fatalf("an empty id: err %v, want 400", err)
	}
}

func TestUpgradeToken(t *testing.T) {
	u := &codec.Upgrader{}
	_, _, req, err := u.Upgrade([]byte(handshake("/ws?token=a.b%2Bc&token=second")), nil)
	if err != nil || req.Token != "a.b+c" {
		t.Fatalf("err %v, token %q", err, req.Token)
	}
}

func TestUpgradeRefusals(t *testing.T) {
	big := "X-Filler: " + strings.Repeat("x", 8<<10)
	for _, tc := range []struct {
		name   string
		in     string
		check  func(*codec.Request) error
		status int
		header [2]string // a header the refusal must carry
		body   string    // a substring of the body
	}{
		{name: "missing key", in: handshake("/ws", "-Sec-WebSocket-Key"), status: 400},
		{name: "short key", in: handshake("/ws", "Sec-WebSocket-Key: abc"), status: 400},
		{name: "key not base64", in: handshake("/ws", "Sec-WebSocket-Key: ************************"), status: 400},
		{name: "key of 17 bytes", in: handshake("/ws", "Sec-WebSocket-Key: "+base64.StdEncoding.EncodeToString(make([]byte, 17))), status: 400},
		{name: "version 8", in: handshake("/ws", "Sec-WebSocket-Version: 8"), status: 426, header: [2]string{"Sec-WebSocket-Version", "13"}},
		{name: "version 14", in: handshake("/ws", "Sec-WebSocket-Version: 14"), status: 426, header: [2]string{"Sec-WebSocket-Version", "13"}},
		{name: "missing version", in: handshake("/ws", "-Sec-WebSocket-Version"), status: 400},
		{name: "plain curl", in: "GET / HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n", status: 426, header: [2]string{"Upgrade", "websocket"}, body: "/ws"},
		{name: "plain on ws path", in: "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n", status: 426, body: "/ws"},
		{name: "plain POST", in: "POST /ws HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", status: 426},
		{name: "plain HTTP/1.0", in: "GET / HTTP/1.0\r\n\r\n", status: 426},
		{name: "upgrade h2c", in: handshake("/ws", "Upgrade: h2c"), status: 426},
		{name: "POST upgrade", in: strings.Replace(handshake("/ws"), "GET", "POST", 1), status: 400},
		{name: "HTTP/1.0 upgrade", in: strings.Replace(handshake("/ws"), "HTTP/1.1", "HTTP/1.0", 1), status: 400},
		{name: "HTTP/2.0 upgrade", in: strings.Replace(handshake("/ws"), "HTTP/1.1", "HTTP/2.0", 1), status: 400},
		{name: "missing host", in: handshake("/ws", "-Host"), status: 400},
		{name: "connection keep-alive", in: handshake("/ws", "Connection: keep-alive"), status: 400},
		{name: "connection lists no upgrade", in: handshake("/ws", "Connection: keep-alive, close"), status: 400, body: "Connection"},
		{name: "upgrade lists websocket-ish only", in: handshake("/ws", "Upgrade: websockets, h2c"), status: 426},
		{name: "two keys", in: strings.Replace(handshake("/ws"), "Host:", "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==\r\nHost:", 1), status: 400, body: "more than one Sec-WebSocket-Key"},
		{name: "NUL in a field", in: strings.Replace(handshake("/ws"), "Host:", "X-Note: a\x00b\r\nHost:", 1), status: 400},
		{name: "header without colon", in: strings.Replace(handshake("/ws"), "Host:", "Broken\r\nHost:", 1), status: 400},
		{name: "bad request line", in: "GET /ws\r\nHost: h\r\n\r\n", status: 400},
		{name: "bad uri", in: handshake("ws"), status: 400},
		{name: "wrong path", in: handshake("/"), status: 404},
		{name: "wrong path with bad match", in: handshake("/other?match=!"), status: 404},
		{name: "headers over 8 KiB", in: handshake("/ws", big), status: 431},
		{name: "forbidden origin", in: handshake("/ws", "Origin: https://evil.example"), check: func(r *codec.Request) error {
			if r.Origin != "https://evil.example" {
				return nil
			}
			return codec.Refuse(403, "origin not allowed")
		}, status: 403, body: "origin not allowed"},
		{name: "bad token", in: handshake("/ws?token=x"), check: func(r *codec.Request) error {
			return codec.Refuse(401, "bad token")
		}, status: 401},
		{name: "admission", in: handshake("/ws"), check: func(r *codec.Request) error {
			return codec.Refuse(503, "full", [2]string{"Retry-After", "3"}, [2]string{"X-Bad", "a\r\nInjected: 1"})
		}, status: 503, header: [2]string{"Retry-After", "3"}},
		{name: "check plain error", in: handshake("/ws"), check: func(r *codec.Request) error {
			return errors.New("boom")
		}, status: 500},
		{name: "check selects unoffered", in: handshake("/ws", "Sec-WebSocket-Protocol: a, b"), check: func(r *codec.Request) error {
			r.Selected = "c"
			return nil
		}, status: 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &codec.Upgrader{Check: tc.check}
			in := []byte(tc.in)
			n, resp, _, err := u.Upgrade(in, nil)
			var he *codec.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v, want *HTTPError\n%s", err, resp)
			}
			if he.Status != tc.status {
				t.Fatalf("status %d (%s), want %d", he.Status, he.Reason, tc.status)
			}
			if n <= 0 || n > len(in) {
				t.Fatalf("n = %d of %d", n, len(in))
			}
			r, body := parseResponse(t, resp)
			if r.StatusCode != tc.status {
				t.Fatalf("response status %d", r.StatusCode)
			}
			if !r.Close || !bytes.Contains(resp, []byte("\r\nConnection: close\r\n")) {
				t.Fatalf("no Connection: close: %q", resp)
			}
			if r.Header.Get("Content-Length") != strconv.Itoa(len(body)) || body == "" {
				t.Fatalf("Content-Length %q for body %q", r.Header.Get("Content-Length"), body)
			}
			if tc.header[0] != "" && r.Header.Get(tc.header[0]) != tc.header[1] {
				t.Fatalf("header %s = %q, want %q\n%s", tc.header[0], r.Header.Get(tc.header[0]), tc.header[1], resp)
			}
			if !strings.Contains(body, tc.body) {
				t.Fatalf("body %q lacks %q", body, tc.body)
			}
			if r.Header.Get("Injected") != "" {
				t.Fatalf("header injection: %q", resp)
			}
		})
	}
}

func TestUpgradeCustomPath(t *testing.T) {
	u := &codec.Upgrader{Path: "/live"}
	if _, _, req, err := u.Upgrade([]byte(handshake("/live?match=x")), nil); err != nil || req.Path != "/live" {
		t.Fatalf("err %v req %+v", err, req)
	}
	_, _, _, err := u.Upgrade([]byte(handshake("/ws")), nil)
	if he, ok := err.(*codec.HTTPError); !ok || he.Status != 404 {
		t.Fatalf("err %v, want 404", err)
	}
}

func TestUpgradeSubprotocol(t *testing.T) {
	u := &codec.Upgrader{Check: func(r *codec.Request) error {
		for _, p := range r.Protocols {
			if tok, ok := strings.CutPrefix(p, "token."); ok {
				r.Token = tok
				r.Selected = p
			}
		}
		return nil
	}}
	in := handshake("/ws", "Sec-WebSocket-Protocol: crease.v1, token.abc")
	_, resp, req, err := u.Upgrade([]byte(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(req.Protocols, []string{"crease.v1", "token.abc"}) || req.Token != "abc" || req.Selected != "token.abc" {
		t.Fatalf("req %+v", req)
	}
	r, _ := parseResponse(t, resp)
	if r.StatusCode != 101 || r.Header.Get("Sec-WebSocket-Protocol") != "token.abc" {
		t.Fatalf("response %q", resp)
	}
}

func TestUpgradeIncomplete(t *testing.T) {
	u := &codec.Upgrader{}
	full := handshake("/ws")
	for _, in := range []string{"", "G", "GET", "GET /ws HTTP/1.1\r\n", full[:len(full)-1], full[:len(full)-2]} {
		out := []byte("x")
		n, resp, _, err := u.Upgrade([]byte(in), out)
		if err != codec.ErrIncomplete || n != 0 || string(resp) != "x" {
			t.Errorf("%q: n %d resp %q err %v", in, n, resp, err)
		}
	}
}

func TestUpgradeRefusesGarbageEarly(t *testing.T) {
	u := &codec.Upgrader{}
	for _, in := range []string{
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
		" GET",
		"GET /ws\r\n",
		"GET /ws HTTP/1.1 extra\r\n",
		"\r\n\r\n",
		"GET /ws HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\n\n", // bare LF: no \r\n\r\n would ever come
	} {
		n, resp, _, err := u.Upgrade([]byte(in), nil)
		he, ok := err.(*codec.HTTPError)
		if !ok || he.Status != 400 || n != len(in) {
			t.Errorf("%q: n %d err %v", in, n, err)
			continue
		}
		parseResponse(t, resp)
	}
}

func TestUpgradeHeaderCap(t *testing.T) {
	u := &codec.Upgrader{MaxHeaderBytes: 256}
	ok := handshake("/ws", "X-Pad: "+strings.Repeat("p", 256-len(handshake("/ws"))-len("X-Pad: \r\n")))
	if len(ok) != 256 {
		t.Fatalf("test setup: %d", len(ok))
	}
	if _, _, _, err := u.Upgrade([]byte(ok), nil); err != nil {
		t.Fatalf("a block of exactly the cap: %v", err)
	}
	over := handshake("/ws", "X-Pad: "+strings.Repeat("p", 257-len(handshake("/ws"))-len("X-Pad: \r\n")))
	for _, in := range []string{over, over[:256], over[:250] + "more bytes that are not a header end"} {
		n, _, _, err := u.Upgrade([]byte(in), nil)
		if he, ok := err.(*codec.HTTPError); !ok || he.Status != 431 || n != len(in) {
			t.Errorf("len %d: n %d err %v", len(in), n, err)
		}
	}
	if _, _, _, err := u.Upgrade([]byte(over[:255]), nil); err != codec.ErrIncomplete {
		t.Errorf("255 bytes of a too long block: %v, want ErrIncomplete", err)
	}
	// Frames behind a block within the cap do not count against it.
	in := append([]byte(ok), make([]byte, 1000)...)
	if n, _, _, err := u.Upgrade(in, nil); err != nil || n != 256 {
		t.Errorf("block plus frames: n %d err %v", n, err)
	}
}

// TestUpgradeDribble feeds a handshake one byte at a time, as a slow client would, and
// checks that it completes exactly when the last header byte arrives.
func TestUpgradeDribble(t *testing.T) {
	u := &codec.Upgrader{}
	hs := handshake("/ws?match=m1", "Origin: o", "Sec-WebSocket-Protocol: p")
	in := append([]byte(hs), 0x81, 0x80)
	for i := 0; i <= len(in); i++ {
		n, resp, req, err := u.Upgrade(in[:i], nil)
		if i < len(hs) {
			if err != codec.ErrIncomplete || n != 0 || len(resp) != 0 {
				t.Fatalf("at %d: n %d err %v", i, n, err)
			}
			continue
		}
		if err != nil || n != len(hs) || req.Origin != "o" || !slices.Equal(req.Matches, []string{"m1"}) {
			t.Fatalf("at %d: n %d err %v req %+v", i, n, err, req)
		}
		if r, _ := parseResponse(t, resp); r.StatusCode != 101 {
			t.Fatalf("status %d", r.StatusCode)
		}
	}
}

func TestUpgraderConcurrentUse(t *testing.T) {
	// One Upgrader serves every event loop; -race checks that Upgrade only reads it.
	u := &codec.Upgrader{Check: func(r *codec.Request) error { return nil }}
	done := make(chan error)
	for range 4 {
		go func() {
			var err error
			for range 50 {
				if _, _, _, e := u.Upgrade([]byte(handshake("/ws?match=a")), nil); e != nil {
					err = e
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
