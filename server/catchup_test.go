package server_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"crease/bus"
	"crease/client"
	"crease/server"
	"crease/server/servertest"
	"crease/shard"
)

// stallNet is a client network whose reads the test can stop and resume (a phone in a
// tunnel that keeps its connection), with a 4 KiB receive buffer so that the gateway
// sees the stall within a few frames.
type stallNet struct {
	mu     sync.Mutex
	paused bool
	resume chan struct{}
}

func newStallNet() *stallNet { return &stallNet{resume: make(chan struct{})} }

func (n *stallNet) pause() {
	n.mu.Lock()
	n.paused, n.resume = true, make(chan struct{})
	n.mu.Unlock()
}

func (n *stallNet) play() {
	n.mu.Lock()
	if n.paused {
		n.paused = false
		close(n.resume)
	}
	n.mu.Unlock()
}

func (n *stallNet) gate() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.paused {
		return nil
	}
	return n.resume
}

type stallConn struct {
	net.Conn
	n *stallNet
}

func (c stallConn) Read(p []byte) (int, error) {
	if g := c.n.gate(); g != nil {
		<-g
	}
	return c.Conn.Read(p)
}

func (n *stallNet) dialer() *websocket.Dialer {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		_ = rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
		return err
	}}
	return &websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 1 << 10,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return stallConn{c, n}, nil
		}}
}

// stallingGateway runs a gateway of loops shard loops with small send buffers and a
// 300 ms stall limit (no cut within a test) on an embedded bus, and publishes m1's seq 1.
func stallingGateway(t *testing.T, loops int) (*server.Server, *servertest.Publisher) {
	t.Helper()
	b := bus.NewEmbedded()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: loops,
		Shard: shard.Options{Budget: 16 << 10, SendBuffer: 8 << 10, StallLimit: 300 * time.Millisecond, CutLimit: time.Minute}})
	p := servertest.NewPublisher(b, "m1")
	p.Set(t, "k0", 0)
	return gw, p
}

// Clients that stop reading for a while without losing their connection: the gateway
// sheds what it queued for them. Those without ?catchup=1 get `resync` and refetch the
// snapshot; those with it get each match's queued deltas composed into one delta with
// `from` and fetch nothing. Every client ends with the exact final state, no delivery
// rule broken (client.Checker).
func TestStalledClientsCatchUp(t *testing.T) {
	gw, p := stallingGateway(t, 2)
	type stalled struct {
		*loadClient
		net *stallNet
	}
	var plain, catchUp []stalled
	for i := range 6 {
		sn := newStallNet()
		w := &loadClient{name: fmt.Sprintf("c%d", i), chk: client.NewChecker()}
		c, err := client.New(client.Options{URL: servertest.WSURL(gw, ""), BaseHTTP: servertest.HTTPURL(gw), Dialer: sn.dialer(),
			CatchUp: i%2 == 1, Observer: snapshotCounter{w.chk, &w.snapshots},
			Backoff: client.Backoff{Base: 10 * time.Millisecond, Cap: 100 * time.Millisecond, InitialSpread: 20 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe("m1", func(s client.State) { w.seq.Store(s.Seq) }); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(ctx) }()
		t.Cleanup(func() { sn.play(); cancel(); <-done })
		if i%2 == 1 {
			catchUp = append(catchUp, stalled{w, sn})
		} else {
			plain = append(plain, stalled{w, sn})
		}
	}
	all := append(append([]stalled{}, plain...), catchUp...)
	servertest.Eventually(t, 10*time.Second, func() error {
		for _, w := range all {
			if w.seq.Load() == 0 {
				return fmt.Errorf("%s holds no state", w.name)
			}
		}
		return nil
	})
	for _, w := range all {
		w.net.pause()
	}
	base := servertest.HTTPURL(gw)
	for i := 1; i <= 600; i++ {
		p.Set(t, fmt.Sprintf("k%d", i%7), i)
	}
	servertest.Eventually(t, 20*time.Second, func() error {
		// The stall limit passes while they do not read: the gateway sheds.
		resyncs := servertest.Metric(t, base, `crease_resyncs_total{reason="slow"}`)
		composed := servertest.Metric(t, base, `crease_catchups_total{result="composed",source="queue"}`)
		if resyncs < float64(len(plain)) || composed < float64(len(catchUp)) {
			return fmt.Errorf("%v slow resyncs, %v catch-ups composed", resyncs, composed)
		}
		return nil
	})
	for _, w := range all {
		w.net.play()
	}
	final := fetchSnapshot(t, gw, "m1")
	servertest.Eventually(t, 20*time.Second, func() error {
		for _, w := range all {
			if err := w.chk.Verify(final); err != nil {
				return err
			}
		}
		return nil
	})
	for _, w := range plain {
		if n := w.snapshots.Load(); n < 2 {
			t.Errorf("%s (no catch-up): %d snapshots, want a refetch after its resync", w.name, n)
		}
	}
	for _, w := range catchUp {
		if n := w.snapshots.Load(); n != 1 {
			t.Errorf("%s (catch-up): %d snapshots, want only the first", w.name, n)
		}
	}
}

// A version 1 client (no since, no ?catchup=1) sees exactly what it saw before recovery
// and catch-up existed: `subscribed` without `recovered`, and when it falls behind,
// `resync` (reason slow) and never a delta with `from`; beside it, a connection that
// opted in and falls behind the same way gets a catch-up delta instead.
func TestVersion1ClientUnchanged(t *testing.T) {
	gw, p := stallingGateway(t, 1)
	v1, _, err := servertest.DialWS(gw.WSAddr().String(), "/ws?match=m1", nil, "")
	if err != nil || v1 == nil {
		t.Fatal(err)
	}
	defer v1.Close()
	v2, _, err := servertest.DialWS(gw.WSAddr().String(), "/ws?match=m1&catchup=1", nil, "")
	if err != nil || v2 == nil {
		t.Fatal(err)
	}
	defer v2.Close()
	for _, c := range []*servertest.WSConn{v1, v2} {
		c.Expect(t, "hello")
		if f := c.Expect(t, "subscribed"); string(f.Raw) != `{"type":"subscribed","match":"m1"}` {
			t.Fatalf("subscribed %s", f.Raw)
		}
	}
	// Neither reads while 3,000 deltas (~450 KB) go out: past the sockets' buffers,
	// the budget and the stall limit.
	for i := 1; i <= 3000; i++ {
		p.Set(t, fmt.Sprintf("k%d", i%7), i)
	}
	servertest.Eventually(t, 20*time.Second, func() error {
		base := servertest.HTTPURL(gw)
		if r, c := servertest.Metric(t, base, `crease_resyncs_total{reason="slow"}`), servertest.Metric(t, base, `crease_catchups_total{result="composed",source="queue"}`); r < 1 || c < 1 {
			return fmt.Errorf("%v slow resyncs, %v catch-ups", r, c)
		}
		return nil
	})
	// Both read again; once they have drained their backlog, deltas flow again.
	readers := []*frameLog{readAll(t, v1), readAll(t, v2)}
	first := p.Seq + 1
	servertest.Eventually(t, 20*time.Second, func() error {
		p.Set(t, "last", int(p.Seq)) // deltas keep coming until each reader has one after its backlog
		for _, r := range readers {
			if r.last() < first {
				return fmt.Errorf("a reader holds seq %d, want ≥ %d", r.last(), first)
			}
		}
		return nil
	})
	servertest.Eventually(t, 20*time.Second, func() error {
		for _, r := range readers {
			if r.last() != p.Seq {
				return fmt.Errorf("a reader holds seq %d, want %d", r.last(), p.Seq)
			}
		}
		return nil
	})
	read := func(r *frameLog) (resyncs, from int) {
		r.mu.Lock()
		defer r.mu.Unlock()
		var last uint64
		for _, f := range r.frames {
			switch f.Type {
			case "resync":
				if !strings.Contains(string(f.Raw), `"reason":"slow"`) {
					t.Errorf("resync %s", f.Raw)
				}
				resyncs++
			case "delta":
				if f.Seq <= last {
					t.Errorf("delta %d after %d", f.Seq, last)
				}
				if strings.Contains(string(f.Raw), `"from":`) {
					from++
				}
				last = f.Seq
			}
		}
		return resyncs, from
	}
	if r, f := read(readers[0]); r == 0 || f != 0 {
		t.Fatalf("version 1 client: %d resyncs, %d deltas with from; want a resync and none", r, f)
	}
	if r, f := read(readers[1]); r != 0 || f == 0 {
		t.Fatalf("catch-up client: %d resyncs, %d deltas with from; want no resync and a catch-up delta", r, f)
	}
}

// frameLog is every frame read from a connection by a goroutine of its own.
type frameLog struct {
	mu     sync.Mutex
	frames []servertest.Frame
	seq    uint64
}

func (l *frameLog) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

func readAll(t *testing.T, c *servertest.WSConn) *frameLog {
	l := &frameLog{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f, err := c.Next(time.Now().Add(time.Minute))
			if err != nil {
				return
			}
			l.mu.Lock()
			l.frames = append(l.frames, f)
			if f.Type == "delta" {
				l.seq = f.Seq
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return l
}
