package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gorilla/websocket"

	"crease/client"
)

// counted is a client's network as this program sees it: the bytes it reads (WebSocket
// and HTTP apart), its dials, and optionally a read rate (a slow reader) with a small
// receive buffer, so that the gateway feels it.
type counted struct {
	ws, http atomic.Int64
	dials    atomic.Int64
	rate     int // bytes per second a slow reader takes; 0: as fast as it can
}

type countConn struct {
	net.Conn
	n      *atomic.Int64
	rate   int
	budget float64
	last   time.Time
}

func (c *countConn) Read(p []byte) (int, error) {
	if c.rate > 0 {
		// A slow link: a token bucket of rate bytes per second, 1 KiB at a time.
		if len(p) > 1024 {
			p = p[:1024]
		}
		now := time.Now()
		c.budget = min(c.budget+now.Sub(c.last).Seconds()*float64(c.rate), float64(c.rate))
		c.last = now
		if c.budget < float64(len(p)) {
			time.Sleep(time.Duration((float64(len(p)) - c.budget) / float64(c.rate) * float64(time.Second))) // the link's pace
			c.budget = float64(len(p))
			c.last = time.Now()
		}
		c.budget -= float64(len(p))
	}
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (k *counted) dial(n *atomic.Int64, countDials bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{}
	if k.rate > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var err error
			_ = rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
			return err
		}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if countDials {
			k.dials.Add(1)
		}
		return &countConn{Conn: c, n: n, rate: k.rate, last: time.Now(), budget: float64(k.rate)}, nil
	}
}

// mclient is one measured Go client of one match.
type mclient struct {
	net   counted
	chk   *client.Checker
	seq   atomic.Uint64
	snaps atomic.Int64
	lat   *latency // nil: not recorded
	stop  func()
}

// latency records publish-to-client delay of deltas (their ts), in microseconds.
type latency struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newLatency() *latency { return &latency{h: hdrhistogram.New(1, 60_000_000, 3)} }

func (l *latency) add(us int64) {
	l.mu.Lock()
	_ = l.h.RecordValue(max(us, 1))
	l.mu.Unlock()
}

// observer is a Checker that also counts snapshot requests and records latencies.
type observer struct {
	*client.Checker
	m *mclient
}

func (o observer) SnapshotRequested(match string) {
	o.m.snaps.Add(1)
	o.Checker.SnapshotRequested(match)
}

func (o observer) Frame(raw []byte) {
	if o.m.lat != nil {
		var f struct {
			Type string `json:"type"`
			TS   int64  `json:"ts"`
		}
		if json.Unmarshal(raw, &f) == nil && f.Type == "delta" && f.TS > 0 {
			o.m.lat.add(time.Now().UnixMicro() - f.TS)
		}
	}
	o.Checker.Frame(raw)
}

type clientOpts struct {
	ws, http string // the gateway's URLs (or a proxy's)
	match    string
	catchUp  bool
	rate     int // slow reader's bytes per second
	lat      *latency
}

// startClient runs a Go client until stop.
func startClient(o clientOpts) (*mclient, error) {
	m := &mclient{chk: client.NewChecker(), lat: o.lat}
	m.net.rate = o.rate
	tr := &http.Transport{DialContext: m.net.dial(&m.net.http, false), MaxIdleConnsPerHost: 1}
	c, err := client.New(client.Options{
		URL: o.ws, BaseHTTP: o.http, CatchUp: o.catchUp,
		Dialer:     &websocket.Dialer{NetDialContext: m.net.dial(&m.net.ws, true), HandshakeTimeout: 10 * time.Second},
		HTTPClient: &http.Client{Transport: tr, Timeout: 20 * time.Second},
		// A short backoff cap, the same for every mode: the time to converge measures
		// the recovery, not the reconnect jitter.
		Backoff:  client.Backoff{Base: 200 * time.Millisecond, Cap: 2 * time.Second, InitialSpread: time.Second},
		Observer: observer{Checker: m.chk, m: m},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	if _, err := c.Subscribe(o.match, func(s client.State) { m.seq.Store(s.Seq) }); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	m.stop = func() { cancel(); <-done }
	return m, nil
}

// bytes is what m read so far.
func (m *mclient) bytes() int64 { return m.net.ws.Load() + m.net.http.Load() }

// requests is m's WebSocket handshakes and snapshot GETs so far.
func (m *mclient) requests() int64 { return m.net.dials.Load() + m.snaps.Load() }

// rawReader is a light fast client: it subscribes over a plain WebSocket and records the
// publish-to-client delay of every delta, nothing more (the Go client's state work
// would make this process, not the gateway, the bottleneck of the measurement).
type rawReader struct {
	conn   *websocket.Conn
	deltas atomic.Int64
	done   chan struct{}
}

func startRawReader(wsURL, match string, lat *latency) (*rawReader, error) {
	c, _, err := websocket.DefaultDialer.Dial(wsURL+"?match="+match, nil)
	if err != nil {
		return nil, err
	}
	r := &rawReader{conn: c, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		var f struct {
			Type string `json:"type"`
			TS   int64  `json:"ts"`
		}
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			f.Type, f.TS = "", 0
			if json.Unmarshal(p, &f) == nil && f.Type == "delta" {
				r.deltas.Add(1)
				lat.add(time.Now().UnixMicro() - f.TS)
			}
		}
	}()
	return r, nil
}

func (r *rawReader) stop() { r.conn.Close(); <-r.done }
