package ops_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"crease/bus"
	"crease/server"
	"crease/server/servertest"
)

// ---- a raw WebSocket client: every server frame is read and checked strictly ----

const upgradeReq = "GET %s HTTP/1.1\r\nHost: crease\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n"

type wsConn struct {
	net.Conn
	br *bufio.Reader
}

// dialWS connects (from local, if set), sends the upgrade for path and reads the answer.
// A non-101 answer is returned with a nil conn (the connection is closed).
func dialWS(addr, path string, local net.IP, header string) (*wsConn, *http.Response, error) {
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
	return &wsConn{Conn: nc, br: br}, resp, nil
}

// frame is one server frame: a text frame's JSON, or a close frame's code.
type frame struct {
	Close   int // close code for a close frame, else 0
	Type    string
	Match   string
	Seq     uint64
	Node    string
	AfterMS int64 `json:"after_ms"`
	Raw     []byte
}

// next reads one server frame. It fails on anything a correct server never sends: a
// masked or fragmented frame, a text frame that is not one JSON object, a truncated
// frame (io.ErrUnexpectedEOF).
func (c *wsConn) next(deadline time.Time) (frame, error) {
	_ = c.SetReadDeadline(deadline)
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return frame{}, err
	}
	if h.Masked || !h.Fin || h.Length > 1<<20 {
		return frame{}, fmt.Errorf("bad server frame header %+v", h)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return frame{}, fmt.Errorf("partial frame (%d bytes announced): %w", h.Length, err)
	}
	switch h.OpCode {
	case ws.OpClose:
		if len(p) < 2 {
			return frame{Close: 1005}, nil
		}
		return frame{Close: int(p[0])<<8 | int(p[1])}, nil
	case ws.OpPing:
		return c.next(deadline) // pongs are not needed within these tests' lifetimes
	case ws.OpText:
		f := frame{Raw: p}
		if err := json.Unmarshal(p, &f); err != nil || f.Type == "" {
			return frame{}, fmt.Errorf("text frame is not a protocol message: %q", p)
		}
		return f, nil
	}
	return frame{}, fmt.Errorf("unexpected opcode %v", h.OpCode)
}

// expect reads the next frame and checks its type.
func (c *wsConn) expect(t testing.TB, typ string) frame {
	t.Helper()
	f, err := c.next(time.Now().Add(10 * time.Second))
	if err != nil {
		t.Fatalf("reading %s: %v", typ, err)
	}
	if f.Type != typ {
		t.Fatalf("got %s (close %d), want %s", f.Raw, f.Close, typ)
	}
	return f
}

// send writes one masked client text frame.
func (c *wsConn) send(s string) error {
	p := []byte(s)
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(p)), Masked: true, Mask: ws.NewMask()}
	ws.Cipher(p, h.Mask, 0)
	if err := ws.WriteHeader(c, h); err != nil {
		return err
	}
	_, err := c.Write(p)
	return err
}

// ---- publishing ----

type publisher struct {
	b   bus.Publisher
	seq map[string]uint64
}

func newPublisher(b bus.Publisher) *publisher { return &publisher{b: b, seq: map[string]uint64{}} }

func (p *publisher) delta(match, prio string) error {
	p.seq[match]++
	n := p.seq[match]
	frame := fmt.Appendf(nil, `{"type":"delta","match":%q,"seq":%d,"prio":%q,"ts":%d,"patch":{"score":{"runs":%d}}}`,
		match, n, prio, time.Now().UnixMicro(), n)
	state := fmt.Appendf(nil, `{"score":{"runs":%d}}`, n)
	return p.b.PublishDelta(context.Background(), bus.Delta{Match: match, Title: "T " + match, Seq: n, State: state, Frame: frame})
}

func (p *publisher) event(match, text string) error {
	frame := fmt.Appendf(nil, `{"type":"event","match":%q,"prio":"low","ts":%d,"kind":"commentary","text":%q}`,
		match, time.Now().UnixMicro(), text)
	return p.b.PublishEvent(context.Background(), match, frame)
}

// ---- HTTP and metrics ----

func get(t testing.TB, url string) (int, http.Header, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// samples is one scrape: series text (name{labels}) → value.
type samples map[string]float64

func scrape(t testing.TB, s *server.Server) samples {
	t.Helper()
	code, _, body := get(t, servertest.HTTPURL(s)+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	return parseMetrics(t, body)
}

func parseMetrics(t testing.TB, body string) samples {
	t.Helper()
	out := samples{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// family returns the series of one metric name (exactly that name, any labels).
func (m samples) family(name string) samples {
	out := samples{}
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			out[k] = v
		}
	}
	return out
}

// sum adds the series of name whose labels contain every one of with (e.g. `loop="0"`).
func (m samples) sum(name string, with ...string) float64 {
	var total float64
outer:
	for k, v := range m.family(name) {
		for _, w := range with {
			if !strings.Contains(k, w) {
				continue outer
			}
		}
		total += v
	}
	return total
}

func (m samples) has(name string) bool { return len(m.family(name)) > 0 }

func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
