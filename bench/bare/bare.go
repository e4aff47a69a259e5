// Package bare is the memory floor of the benchmarks: a gnet/v2 + gobwas/ws server that
// upgrades, sends hello and subscribed, and then only discards what arrives. It holds no
// per-connection state but a flag, so its memory per connection is what the event loop
// itself costs. cmd/bare runs it; heap_test.go measures its live heap per connection the
// same way crease's server.BenchmarkIdleConnHeap does.
package bare

import (
	"bytes"
	"io"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
)

var hello = mustFrame(`{"type":"hello","node":"bare","heartbeat_s":0}`)

func mustFrame(s string) []byte {
	b, err := ws.CompileFrame(ws.NewTextFrame([]byte(s)))
	if err != nil {
		panic(err)
	}
	return b
}

// Server is the bare gnet event handler.
type Server struct {
	gnet.BuiltinEventEngine
}

// upgraded marks a connection past its handshake (gnet's per-connection context).
type upgraded struct{}

// rw feeds ws.Upgrade exactly the request bytes and collects its answer.
type rw struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (x *rw) Read(p []byte) (int, error)  { return x.r.Read(p) }
func (x *rw) Write(p []byte) (int, error) { return x.out.Write(p) }

var _ io.ReadWriter = (*rw)(nil)

// OnTraffic upgrades, says hello and subscribed, then discards.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	if c.Context() != nil {
		// Discard client frames; a close frame (opcode 8) ends the connection.
		b, _ := c.Peek(-1)
		closeFrame := len(b) > 0 && b[0]&0x0f == 0x8
		_, _ = c.Discard(len(b))
		if closeFrame {
			return gnet.Close
		}
		return gnet.None
	}
	b, _ := c.Peek(-1)
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > 8192 {
			return gnet.Close
		}
		return gnet.None
	}
	// Upgrade on exactly the request: ws.Upgrade reads ahead through its own bufio.
	x := &rw{r: bytes.NewReader(b[:end+4])}
	if _, err := ws.Upgrade(x); err != nil {
		_, _ = c.Write(x.out.Bytes())
		return gnet.Close
	}
	match := matchOf(b[:end])
	_, _ = c.Discard(end + 4)
	out := append(x.out.Bytes(), hello...)
	out = append(out, mustFrame(`{"type":"subscribed","match":"`+match+`"}`)...)
	_, _ = c.Write(out)
	c.SetContext(upgraded{})
	return gnet.None
}

func matchOf(req []byte) string {
	i := bytes.Index(req, []byte("match="))
	if i < 0 {
		return ""
	}
	r := req[i+6:]
	j := bytes.IndexAny(r, "& \r")
	if j < 0 {
		return string(r)
	}
	return string(r[:j])
}
