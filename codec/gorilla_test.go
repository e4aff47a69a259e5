package codec_test

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"crease/codec"
)

// serveOne runs a gnet-like loop for one connection: bytes accumulate in one buffer,
// every complete unit is consumed, the rest is kept for the next read. Events go to evs;
// a text message "echo:..." is answered with a text frame, a ping with a pong, a close with
// a close, and a protocol error with its close frame.
func serveOne(t *testing.T, ln net.Listener, u *codec.Upgrader, evs chan<- string) {
	c, err := ln.Accept()
	if err != nil {
		evs <- "accept: " + err.Error()
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var (
		buf      []byte
		upgraded bool
		r        codec.Reader
		frags    int                 // non-final fragments of the current message
		tmp      = make([]byte, 512) // small reads, so frames arrive cut anywhere
	)
	for {
		k, err := c.Read(tmp)
		if err != nil {
			evs <- "eof"
			return
		}
		buf = append(buf, tmp[:k]...)
		if !upgraded {
			n, resp, req, err := u.Upgrade(buf, nil)
			if err == codec.ErrIncomplete {
				continue
			}
			c.Write(resp)
			if err != nil {
				evs <- "refused: " + err.Error()
				return
			}
			evs <- "upgraded " + req.Path + " " + strings.Join(req.Matches, ",") + " " + req.Selected
			buf = buf[n:]
			upgraded = true
			c.Write(codec.TextFrame([]byte(`{"type":"hello","node":"t","heartbeat_s":15}`)))
		}
		for {
			ev, n, err := r.Next(buf)
			if err != nil {
				var ce *codec.CloseError
				errors.As(err, &ce)
				evs <- "error " + ce.Error()
				c.Write(ce.Frame())
				return
			}
			if n == 0 {
				break
			}
			switch ev.Kind {
			case codec.EventNone:
				frags++
			case codec.EventText:
				if frags > 0 {
					evs <- "fragmented"
					frags = 0
				}
				evs <- "text " + string(ev.Payload)
				if s, ok := strings.CutPrefix(string(ev.Payload), "echo:"); ok {
					c.Write(codec.TextFrame([]byte(s)))
				}
			case codec.EventPing:
				evs <- "ping " + string(ev.Payload)
				c.Write(codec.PongFrame(ev.Payload))
			case codec.EventClose:
				evs <- "close " + string(ev.Payload)
				c.Write(codec.CloseFrame(1000, ""))
				return
			default:
				evs <- ev.Kind.String() + " " + string(ev.Payload)
			}
			buf = buf[n:]
		}
	}
}

func dialGorilla(t *testing.T, u *codec.Upgrader, url string, protocols []string) (*websocket.Conn, chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	evs := make(chan string, 100)
	go serveOne(t, ln, u, evs)
	d := websocket.Dialer{WriteBufferSize: 64, Subprotocols: protocols, HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial("ws://"+ln.Addr().String()+url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return conn, evs
}

func next(t *testing.T, evs chan string) string {
	t.Helper()
	select {
	case e := <-evs:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event from the server")
		return ""
	}
}

func expect(t *testing.T, evs chan string, want string) {
	t.Helper()
	if got := next(t, evs); got != want {
		t.Fatalf("server saw %q, want %q", got, want)
	}
}

// TestGorillaClient runs a real client library against the codec: handshake with a
// subprotocol, our server frames read by gorilla, and gorilla's masked frames (fragmented
// by its 64-byte write buffer, with a ping between fragments) read by ours.
func TestGorillaClient(t *testing.T) {
	u := &codec.Upgrader{Check: func(r *codec.Request) error {
		if len(r.Protocols) > 0 {
			r.Selected = r.Protocols[len(r.Protocols)-1]
		}
		return nil
	}}
	conn, evs := dialGorilla(t, u, "/ws?match=m1,m2", []string{"crease.v1", "token.abc"})
	expect(t, evs, "upgraded /ws m1,m2 token.abc")
	if conn.Subprotocol() != "token.abc" {
		t.Fatalf("subprotocol %q", conn.Subprotocol())
	}
	if mt, p, err := conn.ReadMessage(); err != nil || mt != websocket.TextMessage || !strings.Contains(string(p), `"hello"`) {
		t.Fatalf("hello: %v %q %v", mt, p, err)
	}

	conn.WriteMessage(websocket.TextMessage, []byte(`{"op":"subscribe","match":"m123"}`))
	expect(t, evs, `text {"op":"subscribe","match":"m123"}`)

	// A long message in several fragments with a ping in the middle.
	long := "echo:" + strings.Repeat("ü", 500) // 1005 bytes
	w, _ := conn.NextWriter(websocket.TextMessage)
	w.Write([]byte(long[:301])) // cut inside a rune; the buffer flushes fragments as it fills
	if err := conn.WriteControl(websocket.PingMessage, []byte("hb"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(long[301:]))
	w.Close()
	expect(t, evs, "ping hb")
	expect(t, evs, "fragmented")
	expect(t, evs, "text "+long)
	if _, p, err := conn.ReadMessage(); err != nil || string(p) != long[5:] {
		t.Fatalf("echo: %q %v", p, err)
	}

	// Exactly at the cap passes.
	conn.WriteMessage(websocket.BinaryMessage, make([]byte, codec.MaxClientPayload))
	if got := next(t, evs); got != "binary "+string(make([]byte, codec.MaxClientPayload)) {
		t.Fatalf("binary at the cap: %.40q", got)
	}

	conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
	expect(t, evs, "close bye")
	_, _, err := conn.ReadMessage()
	if !websocket.IsCloseError(err, 1000) {
		t.Fatalf("want the echoed close 1000, got %v", err)
	}
}

func TestGorillaTooBig(t *testing.T) {
	conn, evs := dialGorilla(t, &codec.Upgrader{}, "/ws", nil)
	expect(t, evs, "upgraded /ws  ")
	conn.ReadMessage() // hello
	conn.WriteMessage(websocket.TextMessage, make([]byte, codec.MaxClientPayload+1))
	if got := next(t, evs); !strings.Contains(got, "close 1009") {
		t.Fatalf("server: %q", got)
	}
	if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("want close 1009, got %v", err)
	}
}

func TestGorillaInvalidUTF8(t *testing.T) {
	conn, evs := dialGorilla(t, &codec.Upgrader{}, "/ws", nil)
	next(t, evs)
	conn.ReadMessage()
	conn.WriteMessage(websocket.TextMessage, []byte("bad \xff"))
	if got := next(t, evs); !strings.Contains(got, "close 1007") {
		t.Fatalf("server: %q", got)
	}
	if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseInvalidFramePayloadData) {
		t.Fatalf("want close 1007, got %v", err)
	}
}

func TestGorillaRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	evs := make(chan string, 10)
	u := &codec.Upgrader{Check: func(r *codec.Request) error {
		return codec.Refuse(http.StatusServiceUnavailable, "busy", [2]string{"Retry-After", "3"})
	}}
	go serveOne(t, ln, u, evs)
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("err %v resp %+v", err, resp)
	}
	if got := next(t, evs); !strings.HasPrefix(got, "refused: ") {
		t.Fatalf("server: %q", got)
	}
}
