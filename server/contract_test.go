package server_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
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

// Version 2 of the contract where a client meets it: the idle close, header lists,
// 401 challenges, token expiry and the auth op, metrics from the start.

// pingPong sends a ping on c and reads until its pong, skipping the gateway's own
// pings: it fails t if a close frame (or anything else) comes first. It proves the
// connection open and, as a side effect, is traffic from the client.
func pingPong(t testing.TB, c *rawConn) {
	t.Helper()
	writeClientFrame(t, c, true, ws.OpPing, []byte("are you there"), true, 0)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := ws.ReadFrame(c.br)
		if err != nil {
			t.Fatalf("reading the pong: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpPing:
			continue
		case ws.OpPong:
			if string(f.Payload) != "are you there" {
				t.Fatalf("pong %q", f.Payload)
			}
			return
		case ws.OpClose:
			t.Fatalf("closed (%x) where the connection should be open", f.Payload)
		}
	}
}

// The idle close on the connection clock, at --heartbeat 3s (it once
// fired after 8.3-9.0 s): open at 9 s - 1 ms of silence, closed with 4000 a quarter
// second after 9 s; any bytes from the client, a ping here, start the count again.
func TestIdleCloseNeverBeforeThreeHeartbeats(t *testing.T) {
	clock := servertest.NewClock()
	s := servertest.Run(t, server.Options{Shard: shard.Options{Heartbeat: 3 * time.Second, Now: clock.Now}})

	hello := dial(t, s, "")
	if h := expect(t, hello, "hello"); h.HB != 3 {
		t.Fatalf("hello %+v, want heartbeat_s 3", h)
	}
	hello.Close()

	c := rawUpgrade(t, s, "/ws")
	clock.Advance(9*time.Second - time.Millisecond)
	server.Sweep(s)
	pingPong(t, c) // still open; and the ping is traffic
	clock.Advance(9*time.Second - time.Millisecond)
	server.Sweep(s)
	pingPong(t, c)
	clock.Advance(9*time.Second + 250*time.Millisecond)
	server.Sweep(s)
	if code := readUntilClose(t, c, 5*time.Second); code != 4000 {
		t.Fatalf("idle close code %d, want 4000", code)
	}
	servertest.Eventually(t, 5*time.Second, func() error {
		if got := metricValues(t, s, "crease_disconnects_total")[`reason="idle_timeout"`]; got != 1 {
			return fmt.Errorf("disconnects{idle_timeout} = %v, want 1", got)
		}
		return nil
	})
}

// A heartbeat with a sub-second remainder is refused, not truncated: hello announces
// whole seconds.
func TestHeartbeatMustBeWholeSeconds(t *testing.T) {
	for _, hb := range []time.Duration{1500 * time.Millisecond, 999 * time.Millisecond, 2 * time.Hour} {
		_, err := server.New(server.Options{Bus: bus.NewEmbedded(), Shard: shard.Options{Heartbeat: hb}})
		if !errors.Is(err, shard.ErrHeartbeat) {
			t.Errorf("heartbeat %v: err %v, want ErrHeartbeat", hb, err)
		}
	}
}

// RFC 9110 header lists in the handshake.
func TestHandshakeHeaderLists(t *testing.T) {
	s := servertest.Run(t, server.Options{})
	key := "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, tc := range []struct{ name, lines string }{
		{"Connection on two lines", "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n"},
		{"Connection list", "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"},
		{"Upgrade list", "Upgrade: websocket, h2c\r\nConnection: Upgrade\r\n"},
		{"any case", "UPGRADE: WebSocket\r\nconnection: UPGRADE\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, s)
			_, _ = io.WriteString(c, "GET /ws?match=m1 HTTP/1.1\r\nHost: x\r\n"+tc.lines+key+"\r\n")
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("answer %v %v, want 101", resp, err)
			}
			for _, want := range []string{`"hello"`, `"subscribed"`} {
				f, err := ws.ReadFrame(c.br)
				if err != nil || !strings.Contains(string(f.Payload), want) {
					t.Fatalf("frame %q %v, want %s", f.Payload, err, want)
				}
			}
		})
	}
	c := rawDial(t, s)
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"+key+"\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(c.br, nil); err != nil || resp.StatusCode != 400 {
		t.Fatalf("Connection without upgrade: %v %v, want 400", resp, err)
	}
}

// A 401 carries the Bearer challenge (RFC 6750), with error
// invalid_token when a token was sent.
func TestUnauthorizedCarriesBearerChallenge(t *testing.T) {
	s := servertest.Run(t, server.Options{JWTSecret: authSecret})
	expired := authToken(t, authSecret, jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()})
	for _, tc := range []struct {
		name, query string
		protocols   []string
		want        string
	}{
		{"no token", "", nil, `Bearer realm="crease"`},
		{"expired in ?token", "token=" + expired, nil, `Bearer realm="crease", error="invalid_token", error_description="token is expired"`},
		{"garbage as subprotocol", "", []string{"bearer.not.a.jwt"}, `Bearer realm="crease", error="invalid_token"`},
	} {
		_, status, resp := authDial(t, servertest.WSURL(s, tc.query), nil, tc.protocols...)
		if status != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), tc.want) {
			t.Errorf("%s: %d WWW-Authenticate %q, want 401 and %q", tc.name, status, resp.Header.Get("WWW-Authenticate"), tc.want)
		}
	}
}

// Token expiry on a live connection and the auth op, on the
// connection clock: open until the last millisecond before exp, then `error`
// token_expired and 4001; an auth op with a valid token moves exp on and ends the
// subscriptions outside its claim with forbidden; a refused token changes nothing.
func TestTokenExpiryAndAuthOp(t *testing.T) {
	clock := servertest.NewClock()
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, JWTSecret: authSecret, Shard: shard.Options{Now: clock.Now}})
	p := newPublisher(t, b)
	token := func(exp time.Time, matches ...string) string {
		c := jwt.MapClaims{"exp": exp.Unix()}
		if matches != nil {
			c["matches"] = matches
		}
		return authToken(t, authSecret, jwt.SigningMethodHS256, c)
	}
	exp1 := clock.Now().Add(10 * time.Second).Truncate(time.Second)
	exp2 := exp1.Add(30 * time.Second) // within 3 heartbeats (60 s) of c2's last op: no idle close first

	// c1 keeps its first token; c2 replaces it, narrowing its claim to m1; c3 tries a
	// bad token, then one that expired.
	c1 := dial(t, s, "match=m1&token="+token(exp1, "m1", "m2"))
	c2 := dial(t, s, "match=m1,m2&token="+token(exp1, "m1", "m2"))
	c3 := dial(t, s, "match=m1&token="+token(exp1))
	for _, c := range []*websocket.Conn{c1, c2, c3} {
		expect(t, c, "hello")
		expect(t, c, "subscribed")
	}
	expect(t, c2, "subscribed")

	send(t, c2, `{"op":"auth","token":"`+token(exp2, "m1")+`"}`)
	if m := expect(t, c2, "error"); m.Code != "forbidden" || m.Match != "m2" {
		t.Fatalf("auth narrowing the claim: %+v, want error forbidden for m2", m)
	}
	send(t, c2, `{"op":"subscribe","match":"m2"}`)
	if m := expect(t, c2, "error"); m.Code != "forbidden" || m.Match != "m2" {
		t.Fatalf("subscribe m2 under the new token: %+v", m)
	}
	send(t, c3, `{"op":"auth","token":"not.a.jwt"}`)
	if m := expect(t, c3, "error"); m.Code != "unauthorized" || m.Match != "" {
		t.Fatalf("bad token in auth: %+v, want error unauthorized", m)
	}
	send(t, c3, `{"op":"auth","token":"`+token(clock.Now().Add(-time.Second))+`"}`)
	if m := expect(t, c3, "error"); m.Code != "unauthorized" || !strings.Contains(m.Message, "expired") {
		t.Fatalf("expired token in auth: %+v", m)
	}
	// Deltas still flow to all three, m2's no longer to c2.
	p.delta("m2", "normal")
	want := p.delta("m1", "high")
	for i, c := range []*websocket.Conn{c1, c2, c3} {
		if _, data := read(t, c); string(data) != string(want) {
			t.Fatalf("conn %d: got %s, want the m1 delta", i+1, data)
		}
	}

	// One millisecond before exp1 every connection is open.
	clock.Advance(exp1.Sub(clock.Now()) - time.Millisecond)
	server.Sweep(s)
	want = p.delta("m1", "high")
	for i, c := range []*websocket.Conn{c1, c2, c3} {
		if _, data := read(t, c); string(data) != string(want) {
			t.Fatalf("before exp, conn %d: got %s, want the m1 delta", i+1, data)
		}
	}
	// At exp1: c1 and c3 get token_expired and 4001; c2, re-authorised, goes on.
	clock.Advance(time.Millisecond)
	server.Sweep(s)
	for i, c := range []*websocket.Conn{c1, c3} {
		code, seen := authCloseCode(t, c)
		if code != 4001 || len(seen) != 1 || seen[0].Type != "error" || seen[0].Code != "token_expired" {
			t.Fatalf("conn %d at exp: close %d after %+v, want token_expired then 4001", 2*i+1, code, seen)
		}
	}
	want = p.delta("m1", "high")
	if _, data := read(t, c2); string(data) != string(want) {
		t.Fatalf("re-authorised connection after the old exp: got %s", data)
	}
	clock.Advance(exp2.Sub(clock.Now()))
	server.Sweep(s)
	if code, seen := authCloseCode(t, c2); code != 4001 || len(seen) != 1 || seen[0].Code != "token_expired" {
		t.Fatalf("at the new exp: close %d after %+v", code, seen)
	}
	servertest.Eventually(t, 5*time.Second, func() error {
		if got := metricValues(t, s, "crease_disconnects_total")[`reason="token_expired"`]; got != 3 {
			return fmt.Errorf("disconnects{token_expired} = %v, want 3", got)
		}
		return nil
	})
}

// Without --jwt-secret no token is needed and the auth op is accepted silently.
func TestAuthOpWithoutSecretIsIgnored(t *testing.T) {
	s := servertest.Run(t, server.Options{})
	c := dial(t, s, "")
	expect(t, c, "hello")
	send(t, c, `{"op":"auth","token":"anything"}`)
	send(t, c, `{"op":"subscribe","match":"m1"}`)
	expect(t, c, "subscribed") // the next frame: nothing answered the auth op
}

// A fresh gateway exports its per-loop series before any connection; a handshake closed
// at its deadline is counted as handshake_timeout, and one answered with an HTTP status
// as handshake_refused.
func TestMetricsFromTheStart(t *testing.T) {
	s := servertest.Run(t, server.Options{Loops: 2, Shard: shard.Options{HandshakeTimeout: time.Second}})
	conns := metricValues(t, s, "crease_connections")
	lag := metricValues(t, s, "crease_loop_lag_seconds_count")
	for _, l := range []string{`loop="0"`, `loop="1"`} {
		if v, ok := conns[l]; !ok || v != 0 {
			t.Errorf("crease_connections{%s} = %v (present %v), want 0 before any connection", l, v, ok)
		}
		if _, ok := lag[l]; !ok {
			t.Errorf("crease_loop_lag_seconds{%s} absent before any connection", l)
		}
	}
	servertest.Eventually(t, 5*time.Second, func() error {
		for _, l := range []string{`loop="0"`, `loop="1"`} {
			if metricValues(t, s, "crease_loop_lag_seconds_count")[l] == 0 {
				return fmt.Errorf("no loop lag observed on %s yet", l)
			}
		}
		return nil
	})

	c := rawDial(t, s)
	start := time.Now()
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\n") // and nothing more
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("slow handshake: %v, want EOF", err)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("handshake closed after %v, before its 1 s deadline", el)
	}
	servertest.Eventually(t, 5*time.Second, func() error {
		if got := metricValues(t, s, "crease_disconnects_total")[`reason="handshake_timeout"`]; got != 1 {
			return fmt.Errorf("disconnects{handshake_timeout} = %v, want 1", got)
		}
		return nil
	})

	refused := rawDial(t, s) // no Sec-WebSocket-Key: 400
	_, _ = io.WriteString(refused, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if line, err := refused.br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 400") {
		t.Fatalf("handshake without a key: %q %v, want 400", line, err)
	}
	servertest.Eventually(t, 5*time.Second, func() error {
		if got := metricValues(t, s, "crease_disconnects_total")[`reason="handshake_refused"`]; got != 1 {
			return fmt.Errorf("disconnects{handshake_refused} = %v, want 1", got)
		}
		return nil
	})
	if got := metricValues(t, s, "crease_connections"); got[`loop="0"`]+got[`loop="1"`] != 0 {
		t.Fatalf("crease_connections %v after two handshakes that never upgraded", got)
	}
}
