package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// The security suite: origin allowlist, JWT on the handshake and on subscribe ops, the
// per-connection op rate limit, and the size limits (subscriptions, frames, headers).

var authSecret = []byte("crease-test-secret")

func authToken(t testing.TB, secret any, method jwt.SigningMethod, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authDial dials with gorilla and returns the connection (nil on refusal) and the HTTP
// status of the handshake answer.
func authDial(t testing.TB, url string, h http.Header, protocols ...string) (*websocket.Conn, int, *http.Response) {
	t.Helper()
	d := *websocket.DefaultDialer
	d.Subprotocols = protocols
	d.HandshakeTimeout = 5 * time.Second
	c, resp, err := d.Dial(url, h)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s: %v (no HTTP answer)", url, err)
		}
		return nil, resp.StatusCode, resp
	}
	t.Cleanup(func() { c.Close() })
	return c, resp.StatusCode, resp
}

// authCloseCode reads until the server's close frame and returns its code.
func authCloseCode(t testing.TB, c *websocket.Conn) (int, []msg) {
	t.Helper()
	var seen []msg
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code, seen
			}
			t.Fatalf("read: %v (want a close frame)", err)
		}
		var m msg
		_ = json.Unmarshal(data, &m)
		seen = append(seen, m)
	}
}

func TestOriginAllowlist(t *testing.T) {
	s := servertest.Run(t, server.Options{AllowedOrigins: []string{"https://good.example", "fans.example"}})
	url := servertest.WSURL(s, "")
	cases := []struct {
		origin string // "" sends no Origin header
		status int
	}{
		{"https://good.example", 101},
		{"HTTPS://GOOD.EXAMPLE", 101},         // origins compare case-insensitively
		{"https://fans.example:8443", 101},    // a listed bare host allows any scheme and port
		{"http://fans.example", 101},          //
		{"", 101},                             // not a browser: allowed
		{"https://evil.example", 403},         // foreign
		{"https://good.example.evil.io", 403}, // look-alike suffix
		{"https://evil.io/good.example", 403}, // look-alike path
		{"null", 403},                         // sandboxed iframe, file://
		{"http://good.example", 403},          // listed with a scheme: the scheme counts
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		c, status, _ := authDial(t, url, h)
		if status != tc.status {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, status, tc.status)
			continue
		}
		if c != nil {
			expect(t, c, "hello")
		}
	}
	if got := metricValues(t, s, "crease_handshakes_total")[`result="forbidden_origin"`]; got != 5 {
		t.Errorf("crease_handshakes_total{result=forbidden_origin} = %v, want 5", got)
	}
}

func TestJWTHandshake(t *testing.T) {
	s := servertest.Run(t, server.Options{JWTSecret: authSecret})
	hour := time.Now().Add(time.Hour).Unix()
	valid := authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": hour, "sub": "fan"})
	cases := []struct {
		name  string
		token string
	}{
		{"missing", ""},
		{"bad signature", authToken(t, []byte("another-secret"), jwt.SigningMethodHS256, jwt.MapClaims{"exp": hour})},
		{"expired", authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()})},
		{"no exp", authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"sub": "fan"})},
		{"not before in the future", authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": hour, "nbf": time.Now().Add(time.Hour).Unix()})},
		{"HS512 (only HS256 is accepted)", authToken(t, authSecret, jwt.SigningMethodHS512, jwt.MapClaims{"exp": hour})},
		{"alg none", authToken(t, jwt.UnsafeAllowNoneSignatureType, jwt.SigningMethodNone, jwt.MapClaims{"exp": hour})},
		{"tampered payload", valid[:strings.Index(valid, ".")+1] + "eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6ImFkbWluIn0" + valid[strings.LastIndex(valid, "."):]},
		{"garbage", "not.a.jwt"},
		{"exp a string (RFC 7519: a NumericDate is a number)", authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": strconv.FormatInt(hour, 10)})},
		{"nbf a string", authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": hour, "nbf": "0"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := ""
			if tc.token != "" {
				q = "token=" + tc.token
			}
			if _, status, _ := authDial(t, servertest.WSURL(s, q), nil); status != 401 {
				t.Fatalf("?token: status %d, want 401", status)
			}
			if tc.token != "" {
				if _, status, _ := authDial(t, servertest.WSURL(s, ""), nil, "bearer."+tc.token); status != 401 {
					t.Fatalf("subprotocol: status %d, want 401", status)
				}
			}
		})
	}
	t.Run("nbf and iat null: absent", func(t *testing.T) {
		tok := authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": hour, "nbf": nil, "iat": nil})
		if _, status, _ := authDial(t, servertest.WSURL(s, "token="+tok), nil); status != 101 {
			t.Fatalf("status %d, want 101", status)
		}
	})
	t.Run("valid in ?token", func(t *testing.T) {
		c, status, _ := authDial(t, servertest.WSURL(s, "token="+valid), nil)
		if status != 101 {
			t.Fatalf("status %d", status)
		}
		expect(t, c, "hello")
		send(t, c, `{"op":"subscribe","match":"any"}`)
		expect(t, c, "subscribed") // no matches claim: any match
	})
	t.Run("valid as subprotocol, echoed", func(t *testing.T) {
		c, status, resp := authDial(t, servertest.WSURL(s, ""), nil, "crease.v1", "bearer."+valid)
		if status != 101 {
			t.Fatalf("status %d", status)
		}
		if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "bearer."+valid || c.Subprotocol() != "bearer."+valid {
			t.Fatalf("selected protocol %q, want the bearer one", got)
		}
		expect(t, c, "hello")
	})
	if got := metricValues(t, s, "crease_handshakes_total")[`result="unauthorized"`]; got < float64(2*len(cases)-1) {
		t.Errorf("crease_handshakes_total{result=unauthorized} = %v, want %d", got, 2*len(cases)-1)
	}
}

// A token's matches claim: a match outside it, at connect time or by
// op, is answered `error` forbidden naming the match, and the connection goes on.
func TestJWTMatchesClaim(t *testing.T) {
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, JWTSecret: authSecret})
	p := newPublisher(t, b)
	tok := authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{
		"exp": time.Now().Add(time.Hour).Unix(), "matches": []string{"m1", "m2"}})

	// ?match outside the claim: upgraded, the claimed match subscribed, the other refused.
	c, status, _ := authDial(t, servertest.WSURL(s, "match=m1,m3&token="+tok), nil)
	if status != 101 {
		t.Fatalf("status %d, want 101", status)
	}
	expect(t, c, "hello")
	if m := expect(t, c, "subscribed"); m.Match != "m1" {
		t.Fatalf("subscribed %+v", m)
	}
	if m := expect(t, c, "error"); m.Code != "forbidden" || m.Match != "m3" || m.Message == "" {
		t.Fatalf("?match=m3 outside the claim: %+v, want error forbidden with match m3", m)
	}
	// By op: refused, and the connection stays usable.
	send(t, c, `{"op":"subscribe","match":"m3"}`)
	if m := expect(t, c, "error"); m.Code != "forbidden" || m.Match != "m3" {
		t.Fatalf("subscribe m3: %+v, want error forbidden with match m3", m)
	}
	send(t, c, `{"op":"subscribe","match":"m2"}`)
	if m := expect(t, c, "subscribed"); m.Match != "m2" {
		t.Fatalf("subscribed %+v", m)
	}
	waitFor(t, func() bool { return b.Subscribed("m1") }, "bus interest in m1")
	if b.Subscribed("m3") {
		t.Fatal("the gateway subscribed to m3 on the bus for a forbidden subscription")
	}
	want := p.delta("m1", "high")
	if _, data := read(t, c); string(data) != string(want) {
		t.Fatalf("after the refusals got %s, want the m1 delta", data)
	}

	// The same through the subprotocol token.
	c, status, _ = authDial(t, servertest.WSURL(s, ""), nil, "bearer."+tok)
	if status != 101 {
		t.Fatalf("status %d", status)
	}
	expect(t, c, "hello")
	send(t, c, `{"op":"subscribe","match":"nope"}`)
	if m := expect(t, c, "error"); m.Code != "forbidden" || m.Match != "nope" {
		t.Fatalf("subprotocol token: %+v", m)
	}

	// An empty matches claim allows no match at all.
	none := authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "matches": []string{}})
	c, _, _ = authDial(t, servertest.WSURL(s, "token="+none), nil)
	expect(t, c, "hello")
	send(t, c, `{"op":"subscribe","match":"m1"}`)
	if m := expect(t, c, "error"); m.Code != "forbidden" || m.Match != "m1" {
		t.Fatalf("empty claim: %+v", m)
	}
	send(t, c, `{"op":"subscribe","match":"m2"}`)
	expect(t, c, "error") // still open, still refused
	if got := metricValues(t, s, "crease_client_errors_total")[`code="forbidden"`]; got != 5 {
		t.Errorf("client_errors{forbidden} = %v, want 5", got)
	}
	if got := metricValues(t, s, "crease_disconnects_total")[`reason="op_flood"`]; got != 0 {
		t.Errorf("disconnects{op_flood} = %v, want 0: nothing is closed for a forbidden match", got)
	}
}

// The op bucket, on the connection clock so that the test decides
// when time passes: 20 ops/s, a burst of twice the subscription limit (32), refused ops
// answered `rate_limited` with their match, and 1008 only for a flood.
func TestOpRateLimit(t *testing.T) {
	clock := servertest.NewClock()
	s := servertest.Run(t, server.Options{Shard: shard.Options{Now: clock.Now}})
	matches := make([]string, 16)
	for i := range matches {
		matches[i] = fmt.Sprintf("a%d", i)
	}
	// 16 subscriptions at connect time (no ops), then all 16 swapped at once: 32 ops,
	// all within the burst.
	c := dial(t, s, "match="+strings.Join(matches, ","))
	expect(t, c, "hello")
	for range matches {
		expect(t, c, "subscribed")
	}
	for i, m := range matches {
		send(t, c, `{"op":"unsubscribe","match":"`+m+`"}`)
		send(t, c, fmt.Sprintf(`{"op":"subscribe","match":"b%d"}`, i))
	}
	for i := range matches {
		if m := expect(t, c, "subscribed"); m.Match != fmt.Sprintf("b%d", i) {
			t.Fatalf("swap %d: %+v", i, m)
		}
	}
	// The 33rd op at the same instant is refused, naming its match; the connection stays.
	send(t, c, `{"op":"subscribe","match":"b0"}`)
	if m := expect(t, c, "error"); m.Code != "rate_limited" || m.Match != "b0" || !strings.Contains(m.Message, "20 ops per second (burst 32)") {
		t.Fatalf("33rd op: %+v", m)
	}
	// The refused op cost an interval too: after two intervals (100 ms) one op passes.
	clock.Advance(100 * time.Millisecond)
	send(t, c, `{"op":"subscribe","match":"b1"}`)
	expect(t, c, "subscribed")
	// A client that keeps sending at the same instant: refused 31 times (the burst's
	// worth of debt), then closed with 1008 as a flood.
	for range 40 {
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"op":"unsubscribe","match":"x"}`)); err != nil {
			break // closed under us: the close code is read below
		}
	}
	code, seen := authCloseCode(t, c)
	if code != 1008 {
		t.Fatalf("flood: close %d, want 1008", code)
	}
	limited := 0
	for _, m := range seen {
		if m.Type != "error" || m.Code != "rate_limited" || m.Match != "x" {
			t.Fatalf("flood: unexpected %+v", m)
		}
		limited++
	}
	if limited != 31 {
		t.Fatalf("flood: %d rate_limited before the close, want 31", limited)
	}
	servertest.Eventually(t, 5*time.Second, func() error {
		if got := metricValues(t, s, "crease_disconnects_total")[`reason="op_flood"`]; got != 1 {
			return fmt.Errorf("disconnects{op_flood} = %v, want 1", got)
		}
		return nil
	})

	// A client at exactly the sustained rate is never refused, however long it goes on.
	steady := dial(t, s, "")
	expect(t, steady, "hello")
	for i := range 200 {
		clock.Advance(50 * time.Millisecond)
		send(t, steady, fmt.Sprintf(`{"op":"subscribe","match":"s%d"}`, i%16))
		if m := expect(t, steady, "subscribed"); m.Match != fmt.Sprintf("s%d", i%16) {
			t.Fatalf("steady op %d: %+v", i, m)
		}
	}
}

func TestSizeLimits(t *testing.T) {
	s := servertest.Run(t, server.Options{Shard: shard.Options{MaxSubscriptions: 3}})

	t.Run("subscriptions via ?match", func(t *testing.T) {
		c := dial(t, s, "match=a,b,c,d")
		expect(t, c, "hello")
		var subs, refused int
		for range 4 {
			m, data := read(t, c)
			switch {
			case m.Type == "subscribed":
				subs++
			case m.Type == "error" && m.Code == "too_many_subscriptions":
				refused++
			default:
				t.Fatalf("unexpected %s", data)
			}
		}
		if subs != 3 || refused != 1 {
			t.Fatalf("%d subscribed, %d refused; want 3 and 1", subs, refused)
		}
		send(t, c, `{"op":"subscribe","match":"a"}`) // still usable; a repeat counts once
		expect(t, c, "subscribed")
	})
	t.Run("frame of exactly 4 KiB is read, 4 KiB + 1 closes 1009", func(t *testing.T) {
		c := rawUpgrade(t, s, "/ws")
		payload := []byte(`{"op":"subscribe","match":"m1","pad":"` + strings.Repeat("p", 4096-len(`{"op":"subscribe","match":"m1","pad":""}`)) + `"}`)
		if len(payload) != 4096 {
			t.Fatalf("payload %d bytes", len(payload))
		}
		writeClientFrame(t, c, true, ws.OpText, payload, true, 0)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			f, err := ws.ReadFrame(c.br)
			if err != nil {
				t.Fatalf("4 KiB frame: %v", err)
			}
			if f.Header.OpCode == ws.OpText && strings.Contains(string(f.Payload), `"subscribed"`) {
				break
			}
		}
		writeClientFrame(t, c, true, ws.OpText, append(payload, ' '), true, 0)
		if code := readUntilClose(t, c, 5*time.Second); code != 1009 {
			t.Fatalf("4 KiB + 1: close %d, want 1009", code)
		}
	})
	t.Run("header block over 8 KiB is 431, under it upgrades", func(t *testing.T) {
		for _, tc := range []struct {
			cookie int
			status int
		}{{7 << 10, 101}, {9 << 10, 431}, {64 << 10, 431}} {
			c := rawDial(t, s)
			req := fmt.Sprintf("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: c=%s\r\n\r\n",
				strings.Repeat("a", tc.cookie))
			go func() { _, _ = io.WriteString(c, req) }()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("cookie %d: no answer: %v", tc.cookie, err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("cookie of %d bytes: status %d, want %d", tc.cookie, resp.StatusCode, tc.status)
			}
		}
	})
}
