package servertest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// upgradeReq is a fixed handshake: tests care about what the gateway answers, not
// about keys.
const upgradeReq = "GET %s HTTP/1.1\r\nHost: crease\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n"

// UpgradeRequest returns the raw handshake request for path, for tests that write it
// by hand (in pieces, or on a socket of their own).
func UpgradeRequest(path string) string { return fmt.Sprintf(upgradeReq, path, "") }

// WSConn is a raw WebSocket client that reads every server frame strictly: a
// truncated, masked or fragmented frame, or a text frame that is not a protocol
// message, is an error. It is not safe for concurrent reads.
type WSConn struct {
	net.Conn
	br *bufio.Reader
}

// Frame is one server frame: a text frame's protocol message, or a close frame's code.
type Frame struct {
	Close   int // close code for a close frame, else 0
	Type    string
	Match   string
	Seq     uint64
	Node    string
	AfterMS int64 `json:"after_ms"`
	Raw     []byte
}

// DialWS connects to addr (from local, if not nil), sends the handshake for path with
// the extra header lines (each ending in "\r\n"), and returns the upgraded connection.
// A non-101 answer comes back as resp with a nil connection.
func DialWS(addr, path string, local net.IP, header string) (*WSConn, *http.Response, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(nc, upgradeReq, path, header); err != nil {
		nc.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		nc.Close()
		return nil, resp, nil
	}
	_ = nc.SetDeadline(time.Time{})
	return &WSConn{Conn: nc, br: br}, resp, nil
}

// Next reads the next frame before deadline, skipping pings.
func (c *WSConn) Next(deadline time.Time) (Frame, error) {
	for {
		_ = c.SetReadDeadline(deadline)
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return Frame{}, err
		}
		if h.Masked || !h.Fin || h.Length > 1<<20 {
			return Frame{}, fmt.Errorf("bad server frame header %+v", h)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return Frame{}, fmt.Errorf("partial frame (%d bytes announced): %w", h.Length, err)
		}
		switch h.OpCode {
		case ws.OpPing:
			continue // pongs are not needed within these tests' lifetimes
		case ws.OpClose:
			if len(p) < 2 {
				return Frame{Close: 1005}, nil
			}
			return Frame{Close: int(p[0])<<8 | int(p[1])}, nil
		case ws.OpText:
			f := Frame{Raw: p}
			if err := json.Unmarshal(p, &f); err != nil || f.Type == "" {
				return Frame{}, fmt.Errorf("text frame is not a protocol message: %q", p)
			}
			return f, nil
		}
		return Frame{}, fmt.Errorf("unexpected opcode %v", h.OpCode)
	}
}

// Expect reads the next frame (within 10 s) and fails t unless it is a message of typ.
func (c *WSConn) Expect(t testing.TB, typ string) Frame {
	t.Helper()
	f, err := c.Next(time.Now().Add(10 * time.Second))
	if err != nil {
		t.Fatalf("reading %s: %v", typ, err)
	}
	if f.Type != typ {
		t.Fatalf("got %s (close %d), want %s", f.Raw, f.Close, typ)
	}
	return f
}

// Send writes one masked client text frame.
func (c *WSConn) Send(s string) error {
	p := []byte(s)
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(p)), Masked: true, Mask: ws.NewMask()}
	ws.Cipher(p, h.Mask, 0)
	if err := ws.WriteHeader(c, h); err != nil {
		return err
	}
	_, err := c.Write(p)
	return err
}
