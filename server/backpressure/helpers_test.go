package backpressure_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	"crease/client"
	"crease/server"
	"crease/server/servertest"
)

const match = "hot"

// pad makes deltas and events about 300 bytes, like real ones with a scorecard patch.
var pad = strings.Repeat("x", 200)

// gateway is a servertest gateway with its bus and metrics registry.
type gateway struct {
	s   *server.Server
	bus *bus.Embedded
	reg *prometheus.Registry
	seq uint64
}

func startGateway(t *testing.T, opts server.Options) *gateway {
	t.Helper()
	g := &gateway{bus: bus.NewEmbedded(), reg: prometheus.NewRegistry()}
	opts.Bus, opts.Registerer, opts.Gatherer = g.bus, g.reg, g.reg
	g.s = servertest.Run(t, opts)
	return g
}

// delta publishes the next delta of the hot match.
func (g *gateway) delta(t testing.TB, prio string) {
	g.seq++
	n := g.seq
	patch := fmt.Sprintf(`{"score":{"runs":%d},"pad":%q}`, n, pad)
	frame := fmt.Appendf(nil, `{"type":"delta","match":%q,"epoch":"e1","seq":%d,"prio":%q,"ts":%d,"patch":%s}`,
		match, n, prio, time.Now().UnixMicro(), patch)
	if err := g.bus.PublishDelta(context.Background(), bus.Delta{Match: match, Epoch: "e1", Seq: n, State: []byte(patch), Frame: frame}); err != nil {
		t.Errorf("publish delta %d: %v", n, err)
	}
}

// event publishes commentary number n of the hot match.
func (g *gateway) event(t testing.TB, n int) {
	frame := fmt.Appendf(nil, `{"type":"event","match":%q,"prio":"low","ts":%d,"kind":"commentary","n":%d,"text":%q}`,
		match, time.Now().UnixMicro(), n, pad)
	if err := g.bus.PublishEvent(context.Background(), match, frame); err != nil {
		t.Errorf("publish event %d: %v", n, err)
	}
}

// metric sums the series of name whose labels contain every one of labels
// (`reason="slow"`), read from the gateway's registry: the tests poll it tightly.
func (g *gateway) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return servertest.Gather(t, g.reg).Sum(name, labels...)
}

func (g *gateway) snapshot(t testing.TB) client.Snapshot {
	t.Helper()
	var s client.Snapshot
	if err := servertest.GetJSON(servertest.HTTPURL(g.s)+"/v1/matches/"+match, &s); err != nil {
		t.Errorf("snapshot: %v", err)
	}
	return s
}

// ---- raw clients ----

const handshake = "GET /ws?match=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// rawClient is a hand-made WebSocket client over a TCP socket whose receive buffer was
// set before connect, so that the window it advertises stays small.
type rawClient struct {
	nc    net.Conn
	br    *bufio.Reader
	pacer *pacer
}

// dialRaw connects with SO_RCVBUF rcvbuf, upgrades subscribed to the hot match and
// returns the client with `hello` and `subscribed` already read (they go to obs).
func dialRaw(t testing.TB, g *gateway, rcvbuf int, obs *reader) *rawClient {
	t.Helper()
	return dialRawTo(t, g, match, rcvbuf, obs)
}

// dialRawTo is dialRaw subscribed to m.
func dialRawTo(t testing.TB, g *gateway, m string, rcvbuf int, obs *reader) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		}); err != nil {
			return err
		}
		return serr
	}}
	nc, err := d.Dial("tcp", g.s.WSAddr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	pc := &pacer{c: nc}
	c := &rawClient{nc: nc, br: bufio.NewReaderSize(pc, 1024), pacer: pc}
	fmt.Fprintf(nc, handshake, m)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, want := range []string{"hello", "subscribed"} {
		op, p, err := c.next()
		if err != nil || op != ws.OpText || !strings.Contains(string(p), `"type":"`+want+`"`) {
			t.Fatalf("want %s, got %q (%v)", want, p, err)
		}
		if obs != nil {
			obs.frame(p)
		}
	}
	_ = nc.SetReadDeadline(time.Time{})
	return c
}

func (c *rawClient) next() (ws.OpCode, []byte, error) {
	f, err := ws.ReadFrame(c.br)
	return f.Header.OpCode, f.Payload, err
}

// reset closes the socket with SO_LINGER 0: the gateway sees a reset, not a FIN.
func (c *rawClient) reset() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.nc.Close()
}

// ---- the client algorithm over any frame source ----

// reader applies the client algorithm of PROTOCOL.md to one connection's frames: it
// feeds a client.Checker (rules 1 and 2, and the rebuilt state) and a Stream that says
// when a snapshot is needed, and fetches it inline.
type reader struct {
	t       testing.TB
	g       *gateway
	checker *client.Checker
	stream  *client.Stream

	mu        sync.Mutex
	deltas    int
	events    []int // commentary numbers received
	resyncs   map[string]int
	firstSeq  uint64 // first delta seq received
	closeCode int    // close frame code, 0 if none
	frames    int
	err       error // what ended runRaw
}

func newReader(t testing.TB, g *gateway) *reader {
	r := &reader{t: t, g: g, checker: client.NewChecker(), stream: client.NewStream(), resyncs: map[string]int{}}
	r.checker.Connected()
	return r
}

type frameHead struct {
	Type   string          `json:"type"`
	Seq    uint64          `json:"seq"`
	Reason string          `json:"reason"`
	N      int             `json:"n"`
	Patch  json.RawMessage `json:"patch"`
	Match  string          `json:"match"`
}

// frame handles one text frame.
func (r *reader) frame(raw []byte) {
	var h frameHead
	if err := json.Unmarshal(raw, &h); err != nil {
		r.t.Errorf("bad frame %q: %v", raw, err)
		return
	}
	r.checker.Frame(raw)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames++
	switch h.Type {
	case "subscribed":
		// The match exists before any client connects: fetch its snapshot (step 2).
		r.fetch()
	case "resync":
		r.resyncs[h.Reason]++
		r.stream.Resync()
		r.fetch()
	case "delta":
		r.deltas++
		if r.firstSeq == 0 {
			r.firstSeq = h.Seq
		}
		if act, _ := r.stream.Delta(h.Seq, h.Patch); act == client.Gap {
			r.fetch()
		}
	case "event":
		r.events = append(r.events, h.N)
	}
}

// fetch runs with r.mu held.
func (r *reader) fetch() {
	for range 5 {
		r.checker.SnapshotRequested(match)
		s := r.g.snapshot(r.t)
		r.checker.Snapshot(s)
		_ = r.stream.Snapshot(s.Seq, s.State)
		if !r.stream.Waiting() {
			return
		}
	}
}

// seq is the seq of the state held (0 while waiting for a snapshot).
func (r *reader) seq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream.Waiting() {
		return 0
	}
	return r.stream.Seq()
}

// caughtUp returns nil once r holds the state at seq and, unless events is -1, has
// received that many events.
func (r *reader) caughtUp(seq uint64, events int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stream.Waiting():
		return fmt.Errorf("waiting for a snapshot, %d published", seq)
	case r.stream.Seq() != seq:
		return fmt.Errorf("at seq %d, %d published", r.stream.Seq(), seq)
	case events >= 0 && len(r.events) != events:
		return fmt.Errorf("%d of %d events", len(r.events), events)
	}
	return nil
}

func (r *reader) resyncCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resyncCountLocked()
}

func (r *reader) resyncCountLocked() int {
	n := 0
	for _, v := range r.resyncs {
		n += v
	}
	return n
}

// runRaw reads c until an error or a close frame, handling frames.
func (r *reader) runRaw(c *rawClient) error {
	for {
		op, p, err := c.next()
		if err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return err
		}
		switch op {
		case ws.OpText:
			r.frame(p)
		case ws.OpClose:
			r.mu.Lock()
			r.closeCode = 1005
			if len(p) >= 2 {
				r.closeCode = int(p[0])<<8 | int(p[1])
			}
			r.mu.Unlock()
			return io.EOF
		}
	}
}

// runWS reads a gorilla connection until it fails.
func (r *reader) runWS(c *websocket.Conn) error {
	for {
		_, p, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				r.mu.Lock()
				r.closeCode = ce.Code
				r.mu.Unlock()
			}
			return err
		}
		r.frame(p)
	}
}

// dialFast connects a gorilla client to the hot match and reads it on a goroutine.
func dialFast(t testing.TB, g *gateway) *reader {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(servertest.WSURL(g.s, "match="+match), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := newReader(t, g)
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() { defer close(done); _ = r.runWS(c) }()
	servertest.Eventually(t, 5*time.Second, servertest.Cond("fast client subscribed", func() bool { return r.seq() > 0 }))
	return r
}

// pacer is what a raw client reads its socket through: unpaced until pace is called,
// then at most n bytes per read with a pause before each.
type pacer struct {
	c     net.Conn
	n     atomic.Int64
	pause atomic.Int64
}

func (p *pacer) pace(n int, pause time.Duration) { p.n.Store(int64(n)); p.pause.Store(int64(pause)) }

func (p *pacer) Read(b []byte) (int, error) {
	if n := int(p.n.Load()); n > 0 {
		time.Sleep(time.Duration(p.pause.Load()))
		if len(b) > n {
			b = b[:n]
		}
	}
	return p.c.Read(b)
}
