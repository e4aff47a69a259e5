package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// delta builds a protocol delta frame's JSON text.
func delta(match string, seq uint64, prio string) []byte {
	return fmt.Appendf(nil, `{"type":"delta","match":%q,"epoch":"e1","seq":%d,"prio":%q,"ts":%d,"patch":{"score":{"runs":%d}}}`,
		match, seq, prio, time.Now().UnixMicro(), seq)
}

func event(match, text string) []byte {
	return fmt.Appendf(nil, `{"type":"event","match":%q,"prio":"low","ts":%d,"kind":"commentary","text":%q}`,
		match, time.Now().UnixMicro(), text)
}

// publisher publishes deltas of one match on an embedded bus, tracking seq.
type publisher struct {
	t   testing.TB
	b   *bus.Embedded
	seq map[string]uint64
}

func newPublisher(t testing.TB, b *bus.Embedded) *publisher {
	return &publisher{t: t, b: b, seq: map[string]uint64{}}
}

func (p *publisher) delta(match, prio string) []byte {
	p.t.Helper()
	p.seq[match]++
	n := p.seq[match]
	frame := delta(match, n, prio)
	state := fmt.Appendf(nil, `{"score":{"runs":%d}}`, n)
	if err := p.b.PublishDelta(context.Background(), bus.Delta{Match: match, Title: "T " + match, Epoch: "e1", Seq: n, State: state, Frame: frame}); err != nil {
		p.t.Fatalf("publish: %v", err)
	}
	return frame
}

func dial(t testing.TB, s *server.Server, query string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(servertest.WSURL(s, query), nil)
	if err != nil {
		t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type msg struct {
	Type    string          `json:"type"`
	Match   string          `json:"match"`
	Seq     uint64          `json:"seq"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Reason  string          `json:"reason"`
	Node    string          `json:"node"`
	HB      int             `json:"heartbeat_s"`
	AfterMS int64           `json:"after_ms"`
	Patch   json.RawMessage `json:"patch"`
}

func read(t testing.TB, c *websocket.Conn) (msg, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("frame type %d, want text", typ)
	}
	var m msg
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("bad JSON %q: %v", data, err)
	}
	return m, data
}

func expect(t testing.TB, c *websocket.Conn, typ string) msg {
	t.Helper()
	m, data := read(t, c)
	if m.Type != typ {
		t.Fatalf("got %s, want %s", data, typ)
	}
	return m
}

func send(t testing.TB, c *websocket.Conn, s string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestHelloThenSubscribeAndDeliverVerbatim(t *testing.T) {
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	p := newPublisher(t, b)

	byOp := dial(t, s, "")
	h := expect(t, byOp, "hello")
	if h.Node != "test" || h.HB != int(shard.DefaultHeartbeat.Seconds()) {
		t.Fatalf("hello %+v", h)
	}
	send(t, byOp, `{"op":"subscribe","match":"m1"}`)
	if m := expect(t, byOp, "subscribed"); m.Match != "m1" {
		t.Fatalf("subscribed %+v", m)
	}
	byQuery := dial(t, s, "match=m1,m2")
	expect(t, byQuery, "hello")
	got := map[string]bool{}
	for range 2 {
		got[expect(t, byQuery, "subscribed").Match] = true
	}
	if !got["m1"] || !got["m2"] {
		t.Fatalf("query subscriptions %v", got)
	}
	if !b.Subscribed("m1") || !b.Subscribed("m2") {
		waitFor(t, func() bool { return b.Subscribed("m1") && b.Subscribed("m2") }, "bus interest in m1, m2")
	}

	var sent [][]byte
	for range 20 {
		sent = append(sent, p.delta("m1", "normal"))
	}
	for _, c := range []*websocket.Conn{byOp, byQuery} {
		for i, want := range sent {
			_, data := read(t, c)
			if string(data) != string(want) {
				t.Fatalf("frame %d: got %s want %s", i, data, want)
			}
		}
	}
	// Unsubscribe stops the frames of m1 but not of m2.
	send(t, byQuery, `{"op":"unsubscribe","match":"m1"}`)
	// A round trip proves the unsubscribe was processed before the next publish.
	send(t, byQuery, `{"op":"subscribe","match":"m2"}`)
	expect(t, byQuery, "subscribed")
	p.delta("m1", "high")
	want := p.delta("m2", "normal")
	if _, data := read(t, byQuery); string(data) != string(want) {
		t.Fatalf("after unsubscribe got %s, want the m2 delta", data)
	}
	expect(t, byOp, "delta")
	// The last subscriber of m2 leaving drops the bus interest.
	byQuery.Close()
	waitFor(t, func() bool { return !b.Subscribed("m2") }, "bus interest in m2 dropped")
}

// waitFor waits up to 5 s for cond (servertest.Eventually), naming what it waits for.
func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	servertest.Eventually(t, 5*time.Second, servertest.Cond(what, cond))
}

func TestSubscribersOnEveryLoopReceive(t *testing.T) {
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b, Loops: 2})
	p := newPublisher(t, b)
	var conns []*websocket.Conn
	for range 16 {
		c := dial(t, s, "match=hot")
		expect(t, c, "hello")
		expect(t, c, "subscribed")
		conns = append(conns, c)
	}
	perLoop := metricValues(t, s, "crease_connections")
	if perLoop[`loop="0"`] == 0 || perLoop[`loop="1"`] == 0 {
		t.Fatalf("connections not spread over both loops: %v", perLoop)
	}
	for range 5 {
		p.delta("hot", "high")
	}
	for i, c := range conns {
		for want := uint64(1); want <= 5; want++ {
			if m := expect(t, c, "delta"); m.Seq != want {
				t.Fatalf("conn %d: seq %d, want %d", i, m.Seq, want)
			}
		}
	}
}

// metricValues returns the samples of one metric family keyed by their label text.
func metricValues(t testing.TB, s *server.Server, name string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(servertest.HTTPURL(s) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := strings.TrimPrefix(line, name)
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			labels, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue
		}
		var v float64
		fmt.Sscan(strings.TrimSpace(rest), &v)
		out[labels] = v
	}
	return out
}

func TestClientErrorsKeepConnectionUsable(t *testing.T) {
	s := servertest.Run(t, server.Options{Shard: shard.Options{MaxSubscriptions: 2, OpBurst: 100}})
	c := dial(t, s, "")
	expect(t, c, "hello")
	// match: the `error` names the match when the message named a valid one (a
	// malformed since once lost it); op missing, empty or not a string is
	// bad_request, a non-empty string that is no op unknown_op (PROTOCOL.md "Refusals").
	cases := []struct{ in, code, match string }{
		{`not json`, "bad_request", ""},
		{`[1,2]`, "bad_request", ""},
		{`{"op":"dance","match":"m1"}`, "unknown_op", ""},
		{`{"op":"","match":"m1"}`, "bad_request", ""},
		{`{"op":7,"match":"m1"}`, "bad_request", ""},
		{`{"match":"m1"}`, "bad_request", ""},
		{`{"op":"subscribe"}`, "bad_request", ""},
		{`{"op":"subscribe","match":"bad id!"}`, "bad_request", ""},
		{`{"op":"subscribe","match":"` + strings.Repeat("x", 65) + `"}`, "bad_request", ""},
		{`{"op":"subscribe","match":7}`, "bad_request", ""},
		{`{"op":"subscribe","match":"m1","since":{"epoch":"e1","seq":-1}}`, "bad_request", "m1"},
		{`{"op":"subscribe","match":"m1","since":"e1:4"}`, "bad_request", "m1"},
		{`{"op":"subscribe","match":"bad id!","since":"e1:4"}`, "bad_request", ""},
	}
	for _, tc := range cases {
		send(t, c, tc.in)
		if m := expect(t, c, "error"); m.Code != tc.code || m.Match != tc.match {
			t.Fatalf("%s: code %q match %q, want %q %q", tc.in, m.Code, m.Match, tc.code, tc.match)
		}
	}
	send(t, c, `{"op":"subscribe","match":"a"}`)
	expect(t, c, "subscribed")
	send(t, c, `{"op":"subscribe","match":"a"}`) // twice counts once
	expect(t, c, "subscribed")
	send(t, c, `{"op":"subscribe","match":"b"}`)
	expect(t, c, "subscribed")
	send(t, c, `{"op":"subscribe","match":"c"}`)
	if m := expect(t, c, "error"); m.Code != "too_many_subscriptions" {
		t.Fatalf("got %+v", m)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	expect(t, c, "error")
	send(t, c, `{"op":"unsubscribe","match":"b"}`)
	send(t, c, `{"op":"subscribe","match":"c"}`)
	expect(t, c, "subscribed")
}

func TestPingPongAndIdleTimeout(t *testing.T) {
	s := servertest.Run(t, server.Options{Shard: shard.Options{Heartbeat: time.Second}})
	c := dial(t, s, "")
	expect(t, c, "hello")
	pong := make(chan string, 1)
	c.SetPongHandler(func(a string) error { pong <- a; return nil })
	if err := c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// gorilla answers server pings itself while reading; a reader that keeps going
	// stays connected past 3 heartbeats.
	pings := 0
	c.SetPingHandler(func(a string) error {
		pings++
		return c.WriteControl(websocket.PongMessage, []byte(a), time.Now().Add(time.Second))
	})
	_ = c.SetReadDeadline(time.Now().Add(4500 * time.Millisecond))
	_, _, err := c.ReadMessage()
	if !isTimeout(err) {
		t.Fatalf("live client: read ended with %v, want timeout (connection kept)", err)
	}
	select {
	case a := <-pong:
		if a != "hi" {
			t.Fatalf("pong payload %q", a)
		}
	default:
		t.Fatal("no pong")
	}
	if pings < 2 {
		t.Fatalf("%d pings in 4.5 s at a 1 s heartbeat", pings)
	}

	// A client that upgrades and then never sends anything is closed with 4000 after 3
	// heartbeats, never before: start is taken before the handshake is sent, so it is
	// no later than the gateway's last receipt. The sweep runs once a second.
	start := time.Now()
	raw := rawUpgrade(t, s, "/ws")
	code := readUntilClose(t, raw, 8*time.Second)
	if el := time.Since(start); el < 3*time.Second || el > 5500*time.Millisecond {
		t.Fatalf("idle client closed after %v, want from 3 s to 3 s + 2.5 s", el)
	}
	if code != 4000 {
		t.Fatalf("idle close code %d, want 4000", code)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// rawConn is a hand-driven client for malformed input.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func rawDial(t testing.TB, s *server.Server) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", s.WSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{Conn: nc, br: bufio.NewReader(nc)}
}

const handshake = "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

func rawUpgrade(t testing.TB, s *server.Server, path string) *rawConn {
	t.Helper()
	c := rawDial(t, s)
	fmt.Fprintf(c, handshake, path)
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return c
}

// readUntilClose reads server frames until a close frame and returns its code.
func readUntilClose(t testing.TB, c *rawConn, within time.Duration) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	for {
		f, err := ws.ReadFrame(c.br)
		if err != nil {
			t.Fatalf("reading until close: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			if len(f.Payload) < 2 {
				return 1005
			}
			return int(f.Payload[0])<<8 | int(f.Payload[1])
		}
	}
}

func writeClientFrame(t testing.TB, c *rawConn, fin bool, op ws.OpCode, payload []byte, masked bool, rsv byte) {
	t.Helper()
	h := ws.Header{Fin: fin, OpCode: op, Length: int64(len(payload)), Rsv: rsv}
	p := append([]byte(nil), payload...)
	if masked {
		h.Masked = true
		h.Mask = ws.NewMask()
		ws.Cipher(p, h.Mask, 0)
	}
	// Write errors are expected when the server has already closed on an earlier frame;
	// the close code read afterwards is what the tests assert.
	if err := ws.WriteHeader(c, h); err != nil {
		return
	}
	_, _ = c.Write(p)
}

func TestBadFramesGetTheirCloseCodes(t *testing.T) {
	s := servertest.Run(t, server.Options{})
	cases := []struct {
		name  string
		write func(c *rawConn)
		code  int
	}{
		{"unmasked", func(c *rawConn) { writeClientFrame(t, c, true, ws.OpText, []byte(`{}`), false, 0) }, 1002},
		{"rsv bit", func(c *rawConn) { writeClientFrame(t, c, true, ws.OpText, []byte(`{}`), true, 4) }, 1002},
		{"reserved opcode", func(c *rawConn) { writeClientFrame(t, c, true, ws.OpCode(3), []byte(`{}`), true, 0) }, 1002},
		{"bad utf8", func(c *rawConn) { writeClientFrame(t, c, true, ws.OpText, []byte{0xff, 0xfe}, true, 0) }, 1007},
		{"too big from header", func(c *rawConn) {
			// Only the header of a 1 MiB frame: refused before the payload.
			h := ws.Header{Fin: true, OpCode: ws.OpText, Length: 1 << 20, Masked: true, Mask: ws.NewMask()}
			_ = ws.WriteHeader(c, h)
		}, 1009},
		{"fragments over 4 KiB", func(c *rawConn) {
			writeClientFrame(t, c, false, ws.OpText, make([]byte, 3000), true, 0)
			writeClientFrame(t, c, true, ws.OpContinuation, make([]byte, 3000), true, 0)
		}, 1009},
		{"continuation without start", func(c *rawConn) { writeClientFrame(t, c, true, ws.OpContinuation, []byte("x"), true, 0) }, 1002},
		{"normal close echoed", func(c *rawConn) {
			writeClientFrame(t, c, true, ws.OpClose, []byte{0x03, 0xe8}, true, 0)
		}, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawUpgrade(t, s, "/ws")
			tc.write(c)
			if code := readUntilClose(t, c, 5*time.Second); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
		})
	}
	// Fragmented text with a ping between the fragments is one message.
	c := rawUpgrade(t, s, "/ws")
	writeClientFrame(t, c, false, ws.OpText, []byte(`{"op":"subscr`), true, 0)
	writeClientFrame(t, c, true, ws.OpPing, []byte("p"), true, 0)
	writeClientFrame(t, c, true, ws.OpContinuation, []byte(`ibe","match":"frag"}`), true, 0)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var sawPong, sawSub bool
	for !(sawPong && sawSub) {
		f, err := ws.ReadFrame(c.br)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case f.Header.OpCode == ws.OpPong:
			sawPong = string(f.Payload) == "p"
		case strings.Contains(string(f.Payload), `"subscribed","match":"frag"`):
			sawSub = true
		}
	}
}

func TestHandshakeRefusals(t *testing.T) {
	s := servertest.Run(t, server.Options{Shard: shard.Options{HandshakeTimeout: time.Second}, AllowedOrigins: []string{"https://good.example"}})
	key := "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	base := "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	cases := []struct {
		name, req string
		status    int
	}{
		{"missing key", "GET /ws HTTP/1.1\r\n" + base + "Sec-WebSocket-Version: 13\r\n\r\n", 400},
		{"other version", "GET /ws HTTP/1.1\r\n" + base + key + "Sec-WebSocket-Version: 8\r\n\r\n", 426},
		{"headers over 8 KiB", "GET /ws HTTP/1.1\r\n" + base + key + "X-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n", 431},
		{"foreign origin", "GET /ws HTTP/1.1\r\n" + base + key + "Origin: https://evil.example\r\nSec-WebSocket-Version: 13\r\n\r\n", 403},
		{"bad match", "GET /ws?match=no%20spaces HTTP/1.1\r\n" + base + key + "Sec-WebSocket-Version: 13\r\n\r\n", 400},
		{"plain http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426},
		{"garbage", "\x16\x03\x01\x02\x00garbage\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, s)
			_, _ = io.WriteString(c, tc.req)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("no HTTP answer: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	t.Run("good origin and no origin", func(t *testing.T) {
		h := http.Header{"Origin": {"https://good.example"}}
		c, _, err := websocket.DefaultDialer.Dial(servertest.WSURL(s, ""), h)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		rawUpgrade(t, s, "/ws") // no Origin header: not a browser, allowed
	})
	t.Run("slowloris", func(t *testing.T) {
		c := rawDial(t, s)
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.br.ReadByte()
		if err != io.EOF {
			t.Fatalf("slow handshake: %v, want EOF", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("slow handshake closed after %v", el)
		}
	})
}

func TestHTTPPaths(t *testing.T) {
	b := bus.NewEmbedded()
	s := servertest.Run(t, server.Options{Bus: b})
	p := newPublisher(t, b)
	p.delta("m2", "normal")
	p.delta("m1", "normal")
	p.delta("m1", "high")
	base := servertest.HTTPURL(s)

	resp, err := http.Get(base + "/v1/matches/m1")
	if err != nil {
		t.Fatal(err)
	}
	var snap snapshotDoc
	_ = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("ETag") != `"e1.2"` || snap.Seq != 2 || snap.Match != "m1" || string(snap.State) != `{"score":{"runs":2}}` {
		t.Fatalf("snapshot: %d %q %+v", resp.StatusCode, resp.Header.Get("ETag"), snap)
	}
	req, _ := http.NewRequest("GET", base+"/v1/matches/m1", nil)
	req.Header.Set("If-None-Match", `"e1.2"`)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 304 {
		t.Fatalf("conditional GET: %v %v", resp, err)
	}
	for path, want := range map[string]int{"/v1/matches/nope": 404, "/v1/matches/bad%20id": 400, "/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, _ = http.Get(base + "/v1/matches")
	var list []bus.MatchInfo
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != 2 || list[0].Match != "m1" || list[0].Seq != 2 || list[1].Match != "m2" || list[0].Title != "T m1" {
		t.Fatalf("matches %+v", list)
	}
}
