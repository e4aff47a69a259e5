package server_test

import (
	"context"
	"fmt"
	"net"
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

// Clients that stop reading for a while without losing their connection: the gateway
// sheds what it queued for them. Those without ?catchup=1 get `resync` and refetch the
// snapshot; those with it get each match's queued deltas composed into one delta with
// `from` and fetch nothing. Every client ends with the exact final state, no delivery
// rule broken (client.Checker).
func TestStalledClientsCatchUp(t *testing.T) {
	b := bus.NewEmbedded()
	gw := servertest.Run(t, server.Options{Bus: b, Loops: 2,
		Shard: shard.Options{Budget: 16 << 10, SendBuffer: 8 << 10, StallLimit: 300 * time.Millisecond, CutLimit: time.Minute}})
	p := servertest.NewPublisher(b, "m1")
	p.Set(t, "k0", 0)
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
