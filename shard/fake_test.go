package shard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"crease/bus"
)

// fakeConn is a gnet.Conn with a socket of controllable room. Write behaves like gnet's:
// with nothing buffered it hands the socket what fits and buffers the rest; otherwise it
// appends to the buffer. Methods the shard does not use panic (nil embedded interface).
type fakeConn struct {
	gnet.Conn
	room     int    // bytes the socket takes now; < 0: unlimited
	wire     []byte // what the socket took, in order (the peer's view)
	buffered []byte // gnet's outbound buffer
	writes   int
	closes   int
	linger   *int // SetLinger's argument, if it was called
	discard  bool // drop wire bytes (benchmarks)
	onWrite  func()
}

func (f *fakeConn) Write(p []byte) (int, error) {
	f.writes++
	if f.onWrite != nil {
		f.onWrite()
	}
	if len(f.buffered) > 0 {
		f.buffered = append(f.buffered, p...)
		return len(p), nil
	}
	n := len(p)
	if f.room >= 0 && n > f.room {
		n = f.room
	}
	if f.room >= 0 {
		f.room -= n
	}
	if !f.discard {
		f.wire = append(f.wire, p[:n]...)
	}
	f.buffered = append(f.buffered, p[n:]...)
	return len(p), nil
}

func (f *fakeConn) OutboundBuffered() int   { return len(f.buffered) }
func (f *fakeConn) Close() error            { f.closes++; return nil }
func (f *fakeConn) SetLinger(sec int) error { f.linger = &sec; return nil }
func (f *fakeConn) Fd() int                 { return -1 }

// read lets the peer read n more bytes: the socket gains room and gnet's buffer moves
// into it, as gnet does when the socket turns writable.
func (f *fakeConn) read(n int) {
	f.room += n
	m := min(f.room, len(f.buffered))
	f.wire = append(f.wire, f.buffered[:m]...)
	f.buffered = f.buffered[m:]
	f.room -= m
	if len(f.buffered) == 0 {
		f.buffered = nil
	}
}

// wireMsg is one server frame as the peer parsed it.
type wireMsg struct {
	Op     ws.OpCode
	Type   string `json:"type"`
	Match  string `json:"match"`
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
	Kind   string `json:"kind"`
	After  int64  `json:"after_ms"`
	Code   uint16 `json:"-"`
}

// frames parses every complete frame on the wire; a trailing partial frame is an error
// unless partialOK.
func (f *fakeConn) frames(t testing.TB, partialOK bool) []wireMsg {
	t.Helper()
	r := bytes.NewReader(f.wire)
	var out []wireMsg
	for r.Len() > 0 {
		fr, err := ws.ReadFrame(r)
		if err != nil {
			if partialOK && (err == io.ErrUnexpectedEOF || err == io.EOF) {
				break
			}
			t.Fatalf("wire: frame %d: %v", len(out), err)
		}
		m := wireMsg{Op: fr.Header.OpCode}
		switch fr.Header.OpCode {
		case ws.OpText:
			if err := json.Unmarshal(fr.Payload, &m); err != nil {
				t.Fatalf("wire: frame %d: %v: %q", len(out), err, fr.Payload)
			}
		case ws.OpClose:
			if len(fr.Payload) >= 2 {
				m.Code = uint16(fr.Payload[0])<<8 | uint16(fr.Payload[1])
			}
		}
		out = append(out, m)
	}
	return out
}

// fakeLoop is a gnet.EventLoop whose Execute only counts: tests drive the shard's loop
// side (drainInbox, Tick) themselves.
type fakeLoop struct {
	gnet.EventLoop
	executes int
}

func (l *fakeLoop) Execute(context.Context, gnet.Runnable) error { l.executes++; return nil }

func newTestShard(t testing.TB, o Options) *Shard {
	t.Helper()
	if o.FlushSlice == 0 {
		// Tests drive the loop by hand: no flush continuations unless a test asks.
		o.FlushSlice = time.Hour
	}
	o, err := o.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return New(0, &fakeLoop{}, o, Hooks{}, NopLoopMetrics())
}

// openConn opens, upgrades and subscribes a fake connection to matches.
func openConn(s *Shard, room int, matches ...string) (*Conn, *fakeConn) {
	fc := &fakeConn{room: room}
	c := s.Open(fc)
	s.Upgraded(c)
	for _, m := range matches {
		s.Subscribe(c, m)
	}
	return c, fc
}

var pad = string(bytes.Repeat([]byte("x"), 240))

func deltaFrame(t testing.TB, match string, seq uint64, prio string) *Frame {
	t.Helper()
	return busFrame(t, fmt.Appendf(nil, `{"type":"delta","match":%q,"epoch":"e1","seq":%d,"prio":%q,"ts":%d,"patch":{"pad":%q}}`,
		match, seq, prio, time.Now().UnixMicro(), pad))
}

func eventFrame(t testing.TB, match string, n int) *Frame {
	t.Helper()
	return busFrame(t, fmt.Appendf(nil, `{"type":"event","match":%q,"prio":"low","ts":%d,"kind":"commentary","n":%d,"text":%q}`,
		match, time.Now().UnixMicro(), n, pad))
}

func busFrame(t testing.TB, data []byte) *Frame {
	t.Helper()
	m, err := bus.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return NewBusFrame(m)
}

// queuedBytes recomputes what c's lanes hold.
func queuedBytes(c *Conn) int {
	if c.out == nil {
		return 0
	}
	n := 0
	for _, f := range c.out.state {
		n += len(f.Bytes)
	}
	for _, f := range c.out.low {
		n += len(f.Bytes)
	}
	return n
}

// checkAccounting asserts that the byte counters agree with the lanes.
func checkAccounting(t testing.TB, s *Shard, conns ...*Conn) {
	t.Helper()
	var sum int64
	for _, c := range conns {
		got := queuedBytes(c)
		if c.out != nil && c.out.bytes != got {
			t.Fatalf("queue bytes %d, lanes hold %d", c.out.bytes, got)
		}
		sum += int64(got)
	}
	if p := s.PendingBytes(); p != sum {
		t.Fatalf("pending bytes %d, lanes hold %d", p, sum)
	}
}
